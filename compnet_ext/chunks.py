"""Long fused training runs as a series of launches of about a quarter of a second each.

One launch for all epochs cannot be interrupted: Python sees Ctrl-C only when the op returns,
and a GPU kernel cannot be stopped at all. So the fused stages run in chunks of epochs that
carry the Adam state (moments and step count) from one launch to the next. The arithmetic is
exactly that of one launch, so the result is bitwise the same whatever the chunk sizes; only
the loss at each chunk's end is computed once more (negligible at these chunk lengths).

Timing a chunk waits for the GPU (a device sync), which a CUDA graph cannot capture: while the
current stream is capturing, all the epochs run as one launch, untimed (a captured run cannot
be interrupted anyway: it runs when the graph is replayed).
"""
import time

import torch

# Seconds a chunk should take: KeyboardInterrupt is raised at most about this long after Ctrl-C.
CHUNK_SECONDS = 0.25
# A slow rate (point-layer or point-parameter evaluations per second; the CPU kernels reach
# ~1e9 on two cores) to size the first chunk, before any has been timed, well under CHUNK_SECONDS.
_FIRST_RATE = 5e7


def _round_up(n, k):
    return -(-n // k) * k if k > 0 else n


def run_in_chunks(launch, params, epochs, record_every, cost_per_epoch, device):
    """Runs ``epochs`` Adam steps as ``launch(params, state, n, step) -> (params, loss, curve,
    state)`` calls of ``n`` epochs each, starting after ``step`` steps.

    Chunks start at multiples of ``record_every`` so that each chunk's curve continues the
    last. Returns ``(params, loss, curve, state)`` of the whole run.
    """
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return launch(params, None, epochs, 0)
    done, state, curves = 0, None, []
    chunk = max(1, int(CHUNK_SECONDS * _FIRST_RATE / max(cost_per_epoch, 1)))
    while True:
        n = min(_round_up(chunk, record_every), epochs - done)
        start = time.perf_counter()
        params, loss, curve, state = launch(params, state, n, done)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        curves.append(curve)
        done += n
        if done >= epochs:
            return params, loss, torch.cat(curves, 1), state
        # Aim at CHUNK_SECONDS, growing at most 8x per chunk (the first timing is noisy).
        chunk = max(1, min(8 * n, int(n * CHUNK_SECONDS / max(elapsed, 1e-6))))
