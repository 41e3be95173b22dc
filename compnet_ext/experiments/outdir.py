"""The output folder of ``compnet reproduce`` / ``compnet sweep`` (``--out``), and atomic writes.

A run claims its folder before any work (:class:`OutDir`): it creates the folder, takes an
exclusive lock on ``.compnet.lock`` in it (``fcntl.flock``: the kernel drops the lock when the
process dies, so a crashed or killed run never leaves a lock that blocks the next one), and
deletes the files an earlier run left there (:data:`OUTPUT_NAMES`, ``results.json`` first), so
that everything in the folder afterwards belongs to this run. Every file is written atomically
(:func:`atomic_write`: never onto anything but a regular file; a symbolic link is written
through), and ``results.json`` is written last: its presence means the run finished.

Work in progress lives in two subfolders: ``cells/`` (one result file per finished work cell,
:mod:`~compnet_ext.experiments.cells`; kept by ``--resume``, deleted once the run is complete
unless ``--keep-cells``) and, for runs under torchrun, ``logs/`` (one log per rank, and the
ranks' status files, :mod:`~compnet_ext.experiments.distributed`).
"""
import contextlib
import fcntl
import glob
import os
import socket
import stat

LOCK_NAME = ".compnet.lock"
# Every file either command writes, the completion marker first (so it is deleted first). Both
# commands clear all of them: a sweep's results.json beside a reproduction's PNGs would otherwise
# look like one finished run.
OUTPUT_NAMES = ("results.json", "results.csv", "best_fits.png", "loss_curves.png",
                "intervals.png", "sweep.csv", "sweep.png")
CELLS_DIR = "cells"
LOGS_DIR = "logs"
# The ranks' status files (distributed.py): stale ones would read as this run's.
STATUS_SUFFIXES = (".error", ".done", ".alive")


class OutDirError(ValueError):
    """``--out`` cannot be used; the message names the option."""


class NotAFileError(OutDirError):
    """A path to write is there but is not a regular file (a device, a FIFO, a folder...)."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def write_target(path):
    """The file that writing ``path`` creates or replaces: ``path``, or where a symbolic link
    points (a link is written through, as a shell's ``>`` does: the file it names gets the new
    content, the link stays). :class:`NotAFileError` when that exists and is not a regular
    file: a rename onto it would replace a device, a FIFO or a socket with a plain file (as
    root, even /dev/null), and a folder is no file to write."""
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISREG(mode):
        return target
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    via = "" if target == os.path.abspath(path) else f" (a link to {target!r})"
    raise NotAFileError(f"{path!r}{via} is {what}, not a regular file: refusing to replace it")


def check_removable(path):
    """NotAFileError when ``path`` is there and is neither a regular file nor a symbolic link
    (deleting a link leaves what it names): a run deletes only files it could have written."""
    if os.path.islink(path) or not os.path.lexists(path):
        return
    write_target(path)


def atomic_write(path, write, binary=False):
    """Call ``write(f)`` on a temporary file beside ``path``'s :func:`write_target`, then rename
    it onto that target (NotAFileError, before writing anything, when it is not a regular file).

    A reader (or a run that dies half-way) never sees a half-written file: ``path`` is either the
    old file or the complete new one. The temporary name is unique per process; the folder lock
    keeps other runs out.
    """
    target = write_target(path)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class OutDir:
    """``--out`` claimed for one run; a context manager that releases the lock on exit.

    Raises :class:`OutDirError` (naming ``--out``) when the path is empty, an existing file, not
    writable, or locked by another run. ``removed`` lists the earlier run's files it deleted;
    with ``resume`` the finished cells in ``cells/`` (and the rank logs) are kept.
    """

    def __init__(self, path, resume=False):
        self.resume = resume
        if not path.strip():
            raise OutDirError(f"--out must name a folder, got {path!r}")
        if os.path.exists(path) and not os.path.isdir(path):
            raise OutDirError(f"--out {path!r} is an existing file, not a folder")
        self.path = path
        try:
            os.makedirs(path, exist_ok=True)
            # access() sees read-only file systems and (for non-root) permissions; creating the
            # lock file below is the real test.
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
            self._fd = self._lock(os.path.join(path, LOCK_NAME))
        except OSError as e:
            raise OutDirError(f"--out {path!r} is not a writable folder: "
                              f"{e.strerror or e}") from None
        try:
            self.removed = self._clear()
        except OSError as e:
            self.close()
            raise OutDirError(f"--out {path!r}: cannot delete an earlier run's file: {e}") from None

    def _lock(self, lock):
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "pid unknown"
                os.close(fd)
                raise OutDirError(f"--out {self.path!r} is in use by another compnet run "
                                  f"({holder}); wait for it to end or choose another folder") from None
            except BaseException:
                os.close(fd)
                raise
            # The previous holder unlinks the file before unlocking it; if that happened between
            # our open and flock, we hold a lock on a deleted file: start again on the new one.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
                    return fd
            os.close(fd)

    def _clear(self):
        removed = []
        for name in OUTPUT_NAMES:
            path = os.path.join(self.path, name)
            check_removable(path)
            if os.path.lexists(path):
                os.remove(path)
                removed.append(name)
            # temporary files of a run that was killed mid-write
            for tmp in glob.glob(os.path.join(glob.escape(self.path), f".{name}.*.tmp")):
                os.remove(tmp)
        cells = self._clear_folder(CELLS_DIR, () if self.resume else ("*.cell",))
        if cells:
            removed.append(f"{cells} cell file(s) in {CELLS_DIR}/")
        self._clear_folder(LOGS_DIR, [f"rank-*{s}" for s in STATUS_SUFFIXES]
                           + ([] if self.resume else ["rank-*.log"]))
        return removed

    def _clear_folder(self, sub, patterns):
        """Delete ``patterns`` and temporary files in the subfolder ``sub`` (then the folder if
        empty); the number of files matching ``patterns`` deleted."""
        folder = os.path.join(self.path, sub)
        if not os.path.isdir(folder):
            return 0
        n = 0
        for pattern in patterns:
            for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
                check_removable(path)
                os.remove(path)
                n += 1
        for tmp in glob.glob(os.path.join(glob.escape(folder), ".*.tmp")):
            os.remove(tmp)
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty
        return n

    def discard_cells(self):
        """Delete ``cells/`` once the run is complete (its results are in the output files)."""
        self._clear_folder(CELLS_DIR, ("*.cell",))

    def file(self, name):
        return os.path.join(self.path, name)

    def close(self):
        if self._fd is not None:
            # Unlink while still holding the lock (see _lock), then release it.
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.path, LOCK_NAME))
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
