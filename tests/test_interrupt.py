"""Ctrl-C stops a long fused training run promptly (the epochs run as short launches)."""
import signal
import subprocess
import sys
import time

import pytest

RUNS = {
    "train_peaks": "import torch, compnet_ext\n"
                   "x = torch.linspace(0, 1, 200)\n"
                   "go = lambda: compnet_ext.train_peaks(x, x**3, torch.full((4, 6), .5), "
                   "epochs=2**40)\n",
    "train_mlp": "import torch\n"
                 "from compnet_ext.nn import BatchedMLP, train_mlp\n"
                 "x = torch.linspace(0, 1, 200)\n"
                 "m = BatchedMLP(4, (1, 4, 4, 1))\n"
                 "go = lambda: train_mlp(m, x, x**3, epochs=2**40)\n",
}
def default_sigint():
    # A shell's background job starts with SIGINT ignored, and Python then keeps it ignored
    # (no KeyboardInterrupt); the child must see SIGINT as an interactive program would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


WAIT = "import sys\nprint('ready', flush=True)\n"
CATCH = ("try:\n    go()\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
         "    sys.exit(130)\n")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_ctrl_c_interrupts_a_long_run(name, tmp_path):
    # cwd outside the source tree: CI installs the package, the tree has no compiled extension
    proc = subprocess.Popen([sys.executable, "-c", RUNS[name] + WAIT + CATCH], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(1.0)  # well into the run: the first launches are under way
        assert proc.poll() is None, "the run ended on its own"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        latency = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in out, err
    # Launches last about chunks.CHUNK_SECONDS = 0.25 s; allow for a loaded 2-core machine.
    assert latency < 5.0, f"took {latency:.1f} s to notice Ctrl-C"
