"""Running ``compnet sweep`` / ``compnet reproduce`` split over processes (torchrun), and the work
cells of every run, split or not.

Under ``torchrun`` (the environment has ``RANK`` and ``WORLD_SIZE``) every rank parses the same
options; :class:`Session` starts the process group (nccl when training on CUDA, each rank on
``cuda:LOCAL_RANK``; gloo on the CPU), rank 0 claims ``--out`` (lock, earlier results deleted),
and one ``all_gather`` checks that every rank has the same options and sees the same folder (the
cell files are the results, so ``--out`` must be on a file system every rank sees). Without
torchrun there is one rank, no process group, and nothing else changes.

:func:`run_cells` then trains the cells (:mod:`~compnet_ext.experiments.cells`) that ``cells/``
does not already hold, each rank a contiguous share of near-equal cost, and writes one file per
cell. Rank 0 trains its share, then waits for the others' files, showing cells done / total and
an ETA, and returns every cell's result; the caller writes the output files from them exactly as
one process would. The other ranks return None.

Failures stop the whole run in bounded time, with no collective left waiting: the only
collectives are the two at the start (with a timeout, ``COMPNET_DIST_TIMEOUT`` seconds, default
600). A rank whose work raises writes ``logs/rank-R.error`` and exits non-zero (torchrun then ends
the other ranks on its node); every rank looks for such files between its cell groups and rank 0
while it waits, and stops with that rank's error (:class:`RankError`). A rank that dies without a
word (killed, node lost) stops updating ``logs/rank-R.alive`` (a counter rewritten every
:data:`HEARTBEAT_SECONDS` by a thread): rank 0 gives up on it after ``COMPNET_RANK_TIMEOUT``
seconds (default 300) without a change. Each rank logs to ``logs/rank-R.log``.

Test hook: ``COMPNET_TEST_FAULT=RANK:GROUPS:raise|kill`` makes rank RANK raise (or SIGKILL
itself) once it has written GROUPS cell groups; the tests use it to fail and to crash a run.
"""
import datetime
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import cells as cellfiles
from .outdir import CELLS_DIR, LOGS_DIR, OutDir, OutDirError, atomic_write, write_target
from .progress import cell_progress

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.25
TOKEN_NAME = "run.token"


class RankError(RuntimeError):
    """Another rank failed or stopped responding; the message names the rank and its error."""


class OptionsMismatch(ValueError):
    """The ranks were started with different options (a usage error)."""


TIMEOUTS = {"COMPNET_DIST_TIMEOUT": 600, "COMPNET_RANK_TIMEOUT": 300}
"""The timeouts a run under torchrun reads (seconds; default), checked when it starts."""


def _env_seconds(name, env=None):
    text = (os.environ if env is None else env).get(name)
    if text is None:
        return TIMEOUTS[name]
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"environment variable {name} must be a number of seconds > 0, "
                         f"got {text!r}")
    return value


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size``, ``local_rank`` on its node;
    ``launched`` when started by torchrun (or any launcher setting its variables)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False

    @classmethod
    def from_env(cls, env=None):
        """The world torchrun describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; one rank
        when they are absent or describe a world of 1 (it needs no rendezvous: one process
        gives the same files). ValueError naming the variable when they or the
        ``COMPNET_*_TIMEOUT`` variables are not valid, or a world of several ranks has no
        ``MASTER_ADDR``/``MASTER_PORT`` (torchrun sets them): said now, not when first used."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls()
        try:
            rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
            local = int(env.get("LOCAL_RANK", rank))
        except ValueError:
            raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be ints, got {env['RANK']!r}, "
                             f"{env['WORLD_SIZE']!r}, {env.get('LOCAL_RANK')!r}") from None
        if not (size >= 1 and 0 <= rank < size and local >= 0):
            raise ValueError(f"RANK={rank} / WORLD_SIZE={size} / LOCAL_RANK={local} are not a "
                             "valid rank")
        if size == 1:
            return cls()
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in env]
        if missing:
            raise ValueError(f"WORLD_SIZE={size} but {' and '.join(missing)} not set: start the "
                             f"ranks with torchrun (it sets them)")
        for name in TIMEOUTS:
            _env_seconds(name, env)
        return cls(rank, size, local, True)

    def device(self, device):
        """The device this rank trains on: ``cuda:LOCAL_RANK`` for a CUDA run under torchrun."""
        if not (self.launched and device.type == "cuda"):
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {self.local_rank} has no GPU: this node has "
                             f"{torch.cuda.device_count()}; start at most that many processes "
                             "per node (--nproc-per-node)")
        return torch.device("cuda", self.local_rank)


class _RankDir:
    """``--out`` as a rank other than 0 sees it: rank 0 claimed it; nothing is cleared."""

    def __init__(self, path):
        self.path, self.removed = path, []

    def file(self, name):
        return os.path.join(self.path, name)

    def discard_cells(self):
        pass

    def close(self):
        pass


class Session:
    """``--out`` claimed for the run's ranks; a context manager (lock released, process group
    ended on exit).

    ``options``: a JSON-able dict of the parsed options, compared between ranks; ``device``:
    the run's device (decides nccl or gloo). Raises :class:`OutDirError` (``--out`` unusable, in
    use, or not seen by every rank) and :class:`OptionsMismatch` on every rank alike.
    ``od`` is the output folder (an :class:`~compnet_ext.experiments.outdir.OutDir` on rank 0).
    """

    def __init__(self, world, path, *, resume, options, device):
        self.world, self.od, self.group, self.owns = world, None, False, True
        if not world.launched:
            self.od = OutDir(path, resume=resume)
            return
        try:
            self._start(path, resume, options, device)
        except BaseException:
            self.close()
            raise

    @classmethod
    def local(cls, od):
        """One rank on the folder ``od`` claimed by the caller (who also releases it)."""
        self = cls.__new__(cls)
        self.world, self.od, self.group, self.owns = World(), od, False, False
        return self

    def _start(self, path, resume, options, device):
        w = self.world
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(w.device(device))
        timeout = datetime.timedelta(seconds=_env_seconds("COMPNET_DIST_TIMEOUT"))
        dist.init_process_group(backend, timeout=timeout)
        self.group = True
        error, token = None, secrets.token_hex(16)
        if w.rank == 0:
            try:
                self.od = OutDir(path, resume=resume)
                os.makedirs(self.od.file(LOGS_DIR), exist_ok=True)
                atomic_write(os.path.join(self.od.file(LOGS_DIR), TOKEN_NAME),
                             lambda f: f.write(token))
            except (OutDirError, OSError) as e:
                error = str(e)
        else:
            self.od = _RankDir(path)
        mine = {"options": options, "host": socket.gethostname(), "error": error,
                "token": token}
        everyone = self._all_gather(mine)
        if everyone[0]["error"]:
            raise OutDirError(everyone[0]["error"])
        differ = [r for r, e in enumerate(everyone) if e["options"] != everyone[0]["options"]]
        if differ:
            first = everyone[0]["options"]
            names = sorted({k for r in differ for k in set(everyone[r]["options"]) | set(first)
                            if everyone[r]["options"].get(k) != first.get(k)})
            raise OptionsMismatch(f"the ranks were started with different options: rank(s) "
                                  f"{', '.join(map(str, differ))} differ from rank 0 in "
                                  f"{', '.join('--' + n.replace('_', '-') for n in names)}")
        # Every rank must see rank 0's folder: the cell files are how results reach rank 0.
        try:
            with open(os.path.join(path, LOGS_DIR, TOKEN_NAME)) as f:
                sees = f.read() == everyone[0]["token"]
        except OSError:
            sees = False
        blind = [r for r, ok in enumerate(self._all_gather(sees)) if not ok]
        if blind:
            raise OutDirError(f"--out {path!r} is not one folder shared by every rank: rank(s) "
                              f"{', '.join(map(str, blind))} on "
                              f"{', '.join(sorted({everyone[r]['host'] for r in blind}))} do not "
                              f"see rank 0's files (use a file system every node mounts)")

    def _all_gather(self, obj):
        out = [None] * self.world.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.group:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self):
        if self.od is not None and self.owns:
            self.od.close()
        if self.group:
            self.group = False
            dist.destroy_process_group()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Log:
    """This rank's log, ``logs/rank-R.log`` (appended; nothing without torchrun)."""

    def __init__(self, session):
        w = session.world
        self.path = None
        if w.launched:
            folder = session.od.file(LOGS_DIR)
            os.makedirs(folder, exist_ok=True)
            self.path = os.path.join(folder, f"rank-{w.rank}.log")
        self.rank = w.rank

    def __call__(self, message):
        if self.path is None:
            return
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        with open(write_target(self.path), "a") as f:  # never into a FIFO or a device
            f.write(f"{stamp} rank {self.rank}: {message}\n")


class _Heartbeat:
    """A thread rewriting ``logs/rank-R.alive`` with a counter (no clocks compared between
    nodes: rank 0 watches for change)."""

    def __init__(self, folder, rank):
        self.path = os.path.join(folder, f"rank-{rank}.alive")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self):
        n = 0
        while True:
            n += 1
            try:
                atomic_write(self.path, lambda f: f.write(str(n)))
            except OSError:
                pass  # a full disk shows up in the cell writes; a missed beat is harmless
            if self.stop.wait(HEARTBEAT_SECONDS):
                return

    def close(self):
        self.stop.set()
        self.thread.join()


def _status_file(folder, rank, kind):
    return os.path.join(folder, f"rank-{rank}.{kind}")


def _clear_status(logs, size):
    """Rank 0, every rank done: the status files have served."""
    names = [f"rank-{r}.{kind}" for r in range(size) for kind in ("alive", "done")]
    for name in names + [TOKEN_NAME]:
        try:
            os.remove(os.path.join(logs, name))
        except FileNotFoundError:
            pass


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _failures(logs, size, me):
    """A RankError for the first other rank with an error file, else None."""
    for r in range(size):
        if r == me:
            continue
        text = _read(_status_file(logs, r, "error"))
        if text is None:
            continue
        try:
            rec = json.loads(text)
        except ValueError:
            continue  # being written (atomic rename makes this rare): seen on the next poll
        return RankError(f"rank {r} on {rec['host']} failed: {rec['error']} (its log: "
                         f"{os.path.join(logs, f'rank-{r}.log')})")
    return None


def _fault():
    """The test hook COMPNET_TEST_FAULT=RANK:GROUPS:raise|kill, or None."""
    text = os.environ.get("COMPNET_TEST_FAULT")
    if not text:
        return None
    rank, groups, how = text.split(":")
    return int(rank), int(groups), how


def run_cells(session, plan, compute, *, settings, epochs, desc, progress=True, on_done=None):
    """Train every cell of ``plan`` not already valid in ``cells/``; rank 0 returns
    ``{key: payload}`` of all, the other ranks None.

    ``compute(depth, block, kind, cells) -> [payload]`` trains one group (one batched run);
    ``settings`` is the hash a cell file must carry (:func:`~.cells.settings_hash`);
    ``on_done(done, load)`` (rank 0) is told the keys of the cells finished so far whenever
    more are, with ``load(cell) -> payload``.
    """
    w, od = session.world, session.od
    folder = od.file(CELLS_DIR)
    logs = od.file(LOGS_DIR)
    log = _Log(session)
    loaded = {}

    def load(cell):
        if cell.key not in loaded:
            payload, why = cellfiles.read_cell(folder, cell, settings)
            if payload is None:
                raise RuntimeError(f"cell file {cellfiles.cell_path(folder, cell)} is {why}")
            loaded[cell.key] = payload
        return loaded[cell.key]

    todo = None
    if w.rank == 0:
        os.makedirs(folder, exist_ok=True)
        todo, reused = [], 0
        for cell in plan:
            payload, why = cellfiles.read_cell(folder, cell, settings)
            if payload is not None:
                loaded[cell.key] = payload
                reused += 1
                continue
            if why != "missing":  # recomputed; say so, it may point at a disk problem
                os.remove(cellfiles.cell_path(folder, cell))
                print(f"compnet: cell {cell.key}: the file is {why}; recomputing it",
                      file=sys.stderr)
            todo.append(cell)
        if reused:
            print(f"compnet: --resume: reusing {reused} of {len(plan)} finished cells",
                  file=sys.stderr)
    todo = session.broadcast(todo)
    mine = cellfiles.share(todo, w.size, epochs)[w.rank]
    log(f"pid {os.getpid()} on {socket.gethostname()}: {len(mine)} of {len(todo)} cells to "
        f"train ({len(plan) - len(todo)} of {len(plan)} reused)")
    beat = _Heartbeat(logs, w.rank) if w.launched and w.rank != 0 else None
    fault = _fault()
    costs = {c.key: cellfiles.cost(c, epochs) for c in todo}
    bar = cell_progress(len(plan), len(plan) - len(todo), sum(costs.values()), desc,
                        progress and w.rank == 0)
    done = set()

    def look():
        """Rank 0: the cells finished so far (files present), progress and ``on_done``."""
        try:
            present = {n[:-len(cellfiles.SUFFIX)] for n in os.listdir(folder)
                       if n.endswith(cellfiles.SUFFIX)}
        except OSError:
            present = set()
        new = {c.key for c in todo if c.key in present} - done
        if new:
            done.update(new)
            bar.update(len(done), sum(costs[k] for k in done))
            if on_done is not None:
                finished = {c.key for c in plan if c.key not in costs or c.key in done}
                on_done(finished, load)

    try:
        for i, (depth, block, kind, group) in enumerate(cellfiles.groups(mine)):
            if w.launched:
                failure = _failures(logs, w.size, w.rank)
                if failure:
                    raise failure
            if fault and fault[0] == w.rank and fault[1] == i:
                if fault[2] == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError(f"COMPNET_TEST_FAULT: rank {w.rank} fails on purpose "
                                   f"after {i} cell group(s)")
            t0 = time.perf_counter()
            for cell, payload in zip(group, compute(depth, block, kind, group)):
                cellfiles.write_cell(folder, cell, settings, payload)
            log(f"trained {len(group)} cell(s) depth {depth}, seeds {block[0]}..{block[1] - 1}, "
                f"{kind}, {', '.join(c.target for c in group)}: {time.perf_counter() - t0:.2f} s")
            if w.rank == 0:
                look()
        if w.rank != 0:
            beat.close()  # before "done": rank 0 deletes the status files once all are done
            atomic_write(_status_file(logs, w.rank, "done"), lambda f: f.write("done"))
            log("done")
            return None
        look()
        _wait_for_all(session, todo, done, look, logs)
        bar.close()
        log("all cells done")
        if w.launched:
            _clear_status(logs, w.size)
        return {c.key: load(c) for c in plan}
    except BaseException as e:
        bar.close()
        if w.launched and not isinstance(e, RankError):
            log(f"failed:\n{traceback.format_exc()}")
            rec = {"rank": w.rank, "host": socket.gethostname(),
                   "error": f"{type(e).__name__}: {e}" if str(e) else type(e).__name__}
            atomic_write(_status_file(logs, w.rank, "error"), lambda f: json.dump(rec, f))
        elif w.launched:
            log(f"stopped: {e}")
        raise
    finally:
        if beat is not None:
            beat.close()


def _wait_for_all(session, todo, done, look, logs):
    """Rank 0: poll until every cell of ``todo`` has its file; RankError when a rank failed or
    stopped responding."""
    w = session.world
    if len(done) == len(todo):
        return
    timeout = _env_seconds("COMPNET_RANK_TIMEOUT")
    seen = {r: (None, time.monotonic()) for r in range(1, w.size)}
    while True:
        look()
        if len(done) == len(todo):
            return
        failure = _failures(logs, w.size, 0)
        if failure:
            raise failure
        now = time.monotonic()
        for r, (beat, since) in list(seen.items()):
            if _read(_status_file(logs, r, "done")) is not None:
                del seen[r]
                continue
            current = _read(_status_file(logs, r, "alive"))
            if current != beat:
                seen[r] = (current, now)
            elif now - since > timeout:
                raise RankError(f"rank {r} stopped responding: no heartbeat for {timeout:.0f} s "
                                f"(COMPNET_RANK_TIMEOUT) and its cells are not all written; its "
                                f"log: {os.path.join(logs, f'rank-{r}.log')}")
        if not seen and len(done) < len(todo):
            # Every rank said done, yet cells are missing: a file vanished or was never seen.
            look()
            if len(done) < len(todo):
                missing = [c.key for c in todo if c.key not in done]
                raise RankError(f"every rank finished but {len(missing)} cell file(s) are "
                                f"missing, e.g. {missing[0]}")
        time.sleep(POLL_SECONDS)
