"""Build script for compnet_ext.

Environment switches (all optional):
  COMPNET_CUDA=auto|1|0     build the CUDA kernels: auto (default) when torch has CUDA and nvcc
                            is found; 1 forces (error if impossible); 0 skips.
  COMPNET_CUDA_ARCH="8.0;9.0"  CUDA architectures (default: TORCH_CUDA_ARCH_LIST, else 8.0;9.0).
  COMPNET_NATIVE=1|0        compile the CPU kernels for this machine's CPU (-march=native,
                            default 1); set 0 for a portable build (e.g. a wheel to ship).
  COMPNET_FP64_WARPS=16|8   most warps per seed of the float64 CUDA sweeps (default 16); 8 is
                            the variant a GPU session measures against it (docs/gpu.md).
"""
import os
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension

# pip runs this file from the source tree but does not put the tree on sys.path.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_tools"))
from link_check import CheckedBuildExtension, link_args  # noqa: E402


def _flag(name, default):
    return os.environ.get(name, default).strip().lower()


def want_cuda():
    mode = _flag("COMPNET_CUDA", "auto")
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if mode in ("0", "off", "no", "false"):
        return False
    if mode in ("1", "on", "yes", "true", "force"):
        if not possible:
            raise RuntimeError(
                "COMPNET_CUDA=1 but CUDA cannot be built: "
                f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
            )
        return True
    return possible


def extension():
    cuda = want_cuda()
    sources = ["csrc/registration.cpp", "csrc/compnet/problem.cpp", "csrc/compnet/cpu.cpp",
               "csrc/compnet/autograd.cpp", "csrc/mlp/problem.cpp", "csrc/mlp/cpu.cpp",
               "csrc/mlp/autograd.cpp"]
    # -fno-trapping-math lets GCC turn the sweeps' selects into SIMD blends (see
    # common/portability.h).
    # -ffp-contract=off: the compiler must not fuse a*b+c on its own. Whether it does depends on
    # the inlining context and the target CPU, so two call sites of the same math (the fused
    # training stages and loss_and_grad) could round differently; FMAs are written out (cn::fma_).
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-fno-trapping-math", "-ffp-contract=off",
           f'-DCOMPNET_TORCH_VERSION="{torch.__version__}"']
    if _flag("COMPNET_NATIVE", "1") not in ("0", "off", "no", "false"):
        cxx.append("-march=native")
    # link_args: the shared libstdc++ and torch's own libgomp, whatever CXX is (link_check.py).
    args = dict(name="compnet_ext._C", include_dirs=[os.path.abspath("csrc")],
                extra_link_args=link_args())
    if not cuda:
        return CppExtension(sources=sources, extra_compile_args={"cxx": cxx}, **args)
    arch = os.environ.get("COMPNET_CUDA_ARCH") or os.environ.get("TORCH_CUDA_ARCH_LIST") or "8.0;9.0"
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    print(f"compnet_ext: building CUDA kernels for {arch}")
    sources += ["csrc/compnet/cuda.cpp", "csrc/compnet/kernels.cu", "csrc/mlp/cuda.cpp",
                "csrc/mlp/kernels.cu"]
    fp64_warps = _flag("COMPNET_FP64_WARPS", "16")
    if fp64_warps not in ("8", "16"):
        raise RuntimeError(f"COMPNET_FP64_WARPS must be 8 or 16, got {fp64_warps!r}")
    # the glue and the kernels must agree on it (compnet/kernels.h: sweep_max_warps)
    defines = ["-DCOMPNET_WITH_CUDA", f"-DCN_FP64_MAX_WARPS={fp64_warps}"]
    return CUDAExtension(
        sources=sources,
        extra_compile_args={"cxx": cxx + defines,
                            "nvcc": ["-O3", "-std=c++17", "--fmad=false"] + defines},
        **args,
    )


setup(
    packages=find_packages(include=["compnet_ext", "compnet_ext.*"]),
    py_modules=["compnet_cli"],  # the `compnet` entry point, light to import (its docstring)
    ext_modules=[extension()],
    cmdclass={"build_ext": CheckedBuildExtension},
)
