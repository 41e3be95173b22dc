"""Runs a deliberately broken kernel (broken_kernels.cu) without importing torch (a sanitized
torch import costs seconds): python broken.py NAME prints the launch's error and the outputs."""
import ctypes
import os
import sys

from harness_build import build


def broken(name):
    """(error or None, the kernel's 32 outputs)."""
    lib = ctypes.CDLL(os.environ.get("COMPNET_HARNESS_LIB") or str(build()))
    lib.harness_broken.restype = ctypes.c_char_p
    out = (ctypes.c_float * 32)()
    err = lib.harness_broken(name.encode(), out)
    return (None if err is None else err.decode()), list(out)


if __name__ == "__main__":
    err, out = broken(sys.argv[1])
    print("ERROR:", err)
    print("OUT:", out)
