"""Progress bars: tqdm when installed, else a plain carriage-return line on stderr."""
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
