"""Builds the CPU harness library (docs/harness.md): csrc/compnet/kernels.cu and
csrc/mlp/kernels.cu compiled as C++ by the host compiler, with tests/cuda_harness/include first on
the include path (it shadows <cuda_runtime.h>; with CN_CUDA_HARNESS defined,
common/cuda_syntax.cuh takes the harness's launch and shared memory from it), under
AddressSanitizer and UndefinedBehaviorSanitizer. Cached by a hash of every source, header and
flag, so that a change to any .cu/.cuh/.h file is rebuilt by the next test run."""
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CSRC = ROOT / "csrc"
KERNELS = [CSRC / "compnet" / "kernels.cu", CSRC / "mlp" / "kernels.cu", HERE / "broken_kernels.cu"]
HOST = [HERE / "scheduler.cpp", HERE / "capi.cpp"]
CXX = os.environ.get("CXX", "g++")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
FLAGS = ["-std=c++20", "-O1", "-g", "-fPIC", "-fno-omit-frame-pointer", "-ffp-contract=off",
         "-Wall", "-Wno-unknown-pragmas", *SANITIZE, "-DCN_CUDA_HARNESS",
         f"-I{HERE / 'include'}", f"-I{CSRC}"]
# CN_CUDA_HARNESS (every unit): include/cuda_runtime.h is the stand-in only then, and
# common/cuda_syntax.cuh takes the harness's launch syntax. The kernels also see __CUDACC__, so
# that common/portability.h takes the device branches (fixed-size register chunks, written-out
# FMAs), as under nvcc.
KERNEL_FLAGS = ["-x", "c++", "-D__CUDACC__"]


def compiler():
    return shutil.which(CXX)


def asan_runtime():
    out = subprocess.run([CXX, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = out.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def _digest():
    h = hashlib.sha256()
    files = sorted(p for p in CSRC.rglob("*") if p.suffix in (".h", ".cuh", ".cu"))
    files += sorted(p for p in HERE.rglob("*") if p.suffix in (".h", ".cuh", ".cu", ".cpp") or p.name == "harness_build.py")
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    version = subprocess.run([CXX, "--version"], capture_output=True, text=True).stdout
    h.update(" ".join(FLAGS + KERNEL_FLAGS).encode() + version.encode())
    return h.hexdigest()[:16]


def cache_root():
    env = os.environ.get("COMPNET_HARNESS_CACHE")
    if env:
        return Path(env)
    return ROOT / "build" / "cuda_harness"


def build():
    """Returns the path of the harness library, building it if its sources changed."""
    out_dir = cache_root() / _digest()
    lib = out_dir / "libcuda_harness.so"
    if lib.exists():
        return lib
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent))

    def compile_one(src):
        obj = tmp / (src.parent.name + "_" + src.stem + ".o")
        extra = KERNEL_FLAGS if src.suffix == ".cu" else []
        cmd = [CXX, *extra, *FLAGS, "-c", str(src), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"harness build failed:\n{' '.join(cmd)}\n{r.stderr}")
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objs = list(pool.map(compile_one, KERNELS + HOST))
    link = [CXX, "-shared", *SANITIZE, "-o", str(tmp / lib.name), *map(str, objs), "-ldl"]
    r = subprocess.run(link, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"harness link failed:\n{' '.join(link)}\n{r.stderr}")
    try:
        tmp.rename(out_dir)
    except OSError:  # built concurrently by another run
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


if __name__ == "__main__":
    print(build())
