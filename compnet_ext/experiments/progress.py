"""Progress bars: tqdm when installed, else a plain carriage-return line on stderr; and the
progress of a run's work cells (:func:`cell_progress`), with an ETA."""
import sys
import time


class _Line:
    def __init__(self, total, desc):
        self.total, self.desc, self.n = total, desc, 0
        self.t0 = self.last = time.perf_counter()
        self._draw()

    def _draw(self):
        pct = 100.0 * self.n / self.total if self.total else 100.0
        el = time.perf_counter() - self.t0
        sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total} ({pct:3.0f}%) {el:6.1f}s")
        sys.stderr.flush()

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if now - self.last > 0.5 or self.n >= self.total:
            self.last = now
            self._draw()

    def close(self):
        self._draw()
        sys.stderr.write("\n")


class _Null:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(total, desc, enabled=True):
    """An object with ``update(n)`` and ``close()``; silent when not ``enabled``."""
    if not enabled:
        return _Null()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Line(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, mininterval=0.5)


class _Cells:
    """Cells done of the total, elapsed time and an ETA from the cost done so far this run."""

    def __init__(self, total, initial, cost, desc):
        self.total, self.initial, self.cost, self.desc = total, initial, cost, desc
        self.n, self.done_cost = 0, 0
        self.t0 = self.last = time.perf_counter()
        self.closed = False
        self._draw()

    def _draw(self):
        el = time.perf_counter() - self.t0
        n = self.initial + self.n
        pct = 100.0 * n / self.total if self.total else 100.0
        if self.done_cost and self.cost:
            eta = f"ETA {_duration(el * (self.cost - self.done_cost) / self.done_cost)}"
        else:
            eta = "ETA ?"
        sys.stderr.write(f"\r{self.desc}: {n}/{self.total} cells ({pct:3.0f}%), "
                         f"{_duration(el)}, {eta}   ")
        sys.stderr.flush()

    def update(self, n, done_cost):
        """``n`` cells (of ``done_cost``) finished this run so far."""
        self.n, self.done_cost = n, done_cost
        now = time.perf_counter()
        if now - self.last > 0.5 or self.initial + n >= self.total:
            self.last = now
            self._draw()

    def close(self):
        if not self.closed:
            self.closed = True
            self._draw()
            sys.stderr.write("\n")


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


class _NullCells:
    def update(self, n, done_cost):
        pass

    def close(self):
        pass


def cell_progress(total, initial, cost, desc, enabled=True):
    """Progress of a run's work cells on stderr: ``total`` cells, ``initial`` of them reused,
    ``cost`` the summed cost of the rest (the ETA is the elapsed time scaled by the cost left
    over the cost done); ``update(n, done_cost)``, ``close()``. Silent when not ``enabled``."""
    return _Cells(total, initial, cost, desc) if enabled else _NullCells()
