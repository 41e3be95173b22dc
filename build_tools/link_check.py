"""How the extension links to the C++ and OpenMP runtimes, and the check of what a link produced.

torch's libraries use the shared libstdc++ and one libgomp. The extension must use the same two:
- a second copy of the C++ runtime (libstdc++ linked statically, as some compilers or compiler
  wrappers do) means an exception thrown in the extension is caught by torch's copy, and every
  C++ error the extension raises kills Python (SIGSEGV) instead of arriving as a RuntimeError;
- a second OpenMP runtime gives a second thread pool, and torch's at::in_parallel_region()
  (asked of torch's runtime) no longer sees the extension's parallel regions.

Outside the package, so that setup.py can import it before compnet_ext is built, and the tests
can drive the same build and check on a tiny library of their own. The checks are Linux (ELF)
only; elsewhere the build is torch's unchanged.
"""
import os
import shutil
import struct
import sys

import torch  # loads torch's OpenMP runtime, which link_args links against
from setuptools.errors import LinkError
from torch.utils.cpp_extension import BuildExtension

LINUX = sys.platform.startswith("linux")
LIBSTDCXX = "libstdc++.so"

_SHT_DYNAMIC = 6
_DT_NEEDED = 1


class LinkCheckError(Exception):
    """A built extension would not use the process's shared C++ runtime."""


def needed_libraries(path):
    """The NEEDED entries of an ELF shared object, in order (what `readelf -d` lists).

    Read from the section headers in Python: readelf is not on every machine that builds."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise LinkCheckError(f"{path} is not an ELF file")
    wide = data[4] == 2  # ELFCLASS64
    end = "<" if data[5] == 1 else ">"  # ELFDATA2LSB
    if wide:
        (shoff,) = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
    shdr = end + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
    sections = [struct.unpack_from(shdr, data, shoff + i * shentsize) for i in range(shnum)]
    for _, kind, _, _, offset, size, link, *_ in sections:
        if kind == _SHT_DYNAMIC:
            strings = sections[link][4]
            entries = struct.iter_unpack(end + ("qQ" if wide else "iI"), data[offset:offset + size])
            return [data[strings + value:data.index(b"\0", strings + value)].decode()
                    for tag, value in entries if tag == _DT_NEEDED]
    return []


def check_shared_libstdcxx(path, compiler):
    """Raise LinkCheckError, naming `compiler` and the fix, unless the ELF object at `path` links
    libstdc++ as a shared library (and so uses the copy torch and the process already have)."""
    needed = needed_libraries(path)
    if any(name.startswith(LIBSTDCXX) for name in needed):
        return
    raise LinkCheckError(
        f"compnet_ext: the C++ compiler {compiler} linked libstdc++ statically into {path} "
        f"(its shared libraries: {', '.join(needed) or 'none'}; no {LIBSTDCXX}.*). Such an "
        "extension carries its own copy of the C++ runtime, and every C++ error it raises would "
        "kill Python (SIGSEGV) instead of raising a RuntimeError, because torch catches it with "
        "the shared copy. Build with a compiler that links libstdc++ dynamically, for example "
        "the system's: `CXX=/usr/bin/g++ pip install --no-build-isolation .` (or the compiler "
        "that built torch)."
    )


def mapped_libraries(prefixes):
    """Paths of the files mapped into this process whose name starts with one of `prefixes`:
    the libraries actually loaded, whatever `ldd` of one library says."""
    with open("/proc/self/maps") as f:
        paths = {fields[5] for fields in (line.split(maxsplit=5) for line in f) if len(fields) == 6}
    return sorted(p.strip() for p in paths if os.path.basename(p).startswith(prefixes))


def link_args():
    """The extension's link flags.

    `-lstdc++` on the command line comes before the libraries the compiler driver appends, so the
    shared libstdc++ resolves every C++ runtime symbol even when the compiler (or a wrapper)
    adds `-static-libstdc++`: the static archive is then never pulled in. It cannot help a
    compiler that has no shared libstdc++ at all; CheckedBuildExtension stops that build.

    OpenMP: torch's loaded libgomp is linked by its path, ahead of the compiler's own (which
    `-fopenmp` appends and `--as-needed` drops once torch's provides every symbol). The
    extension then needs the soname of torch's copy, and the dynamic linker, which matches the
    sonames of libraries already loaded, binds it to the copy torch loaded (compnet_ext imports
    torch first), even where torch ships it renamed. (`ldd _C.so` shows the system's libgomp
    only because ldd does not load torch first.) Without exactly one loaded libgomp (torch built
    without OpenMP or with another runtime), `-fopenmp` alone links the compiler's own runtime."""
    if not LINUX:
        return ["-fopenmp"]
    gomp = mapped_libraries(("libgomp",))
    openmp = ["-Wl,--as-needed", gomp[0]] if len(gomp) == 1 else []
    return ["-lstdc++", *openmp, "-fopenmp"]


class CheckedBuildExtension(BuildExtension):
    """torch's build_ext, then check_shared_libstdcxx on each built library: one with its own
    copy of libstdc++ is deleted and the build stops with the compiler's name and the fix."""

    def build_extension(self, ext):
        super().build_extension(ext)
        if not LINUX:
            return
        path = self.get_ext_fullpath(ext.name)
        linker = self.compiler.compiler_cxx[0]  # distutils links C++ with the C++ compiler
        compiler = f"{linker} ({shutil.which(linker) or 'not on PATH'}; CXX={os.environ.get('CXX')!r})"
        try:
            check_shared_libstdcxx(path, compiler)
        except LinkCheckError as e:
            os.remove(path)
            raise LinkError(f"{e} (The built file has been removed.)") from None
