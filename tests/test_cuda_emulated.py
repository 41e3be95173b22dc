"""The CUDA kernels (csrc/**/kernels.cu), executed on the CPU by the warp-faithful harness
(docs/harness.md) under AddressSanitizer and UndefinedBehaviorSanitizer, no GPU needed.

The harness library is built from the source tree (cached by a hash of the sources, so a change
to any .cu/.cuh/.h is rebuilt here) and the cases (tests/cuda_harness/emulated_cases.py) run in a
subprocess that preloads the sanitizer runtime, so this process is unaffected. The deliberately
broken kernels (tests/cuda_harness/broken_kernels.cu) show that each bug class fails, with the
error the harness or the sanitizer reports."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "cuda_harness"
sys.path.insert(0, str(HARNESS))
import harness_build as build  # noqa: E402

pytestmark = [
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the harness's fiber switch is x86-64"),
    pytest.mark.skipif(build.compiler() is None, reason=f"host compiler {build.CXX} not found"),
    pytest.mark.skipif(not (HERE.parent / "csrc").is_dir(), reason="needs the source tree (csrc/)"),
]


@pytest.fixture(scope="module")
def env():
    asan = build.asan_runtime()
    if asan is None:
        pytest.skip(f"{build.CXX} has no AddressSanitizer runtime (libasan.so)")
    lib = build.build()
    e = dict(os.environ)
    # libstdc++ is preloaded too: ASan's C++ exception interceptor must find it at startup.
    stdcxx = subprocess.run([build.CXX, "-print-file-name=libstdc++.so"], capture_output=True,
                            text=True).stdout.strip()
    e["LD_PRELOAD"] = " ".join(p for p in (asan, stdcxx) if os.path.isabs(p))
    e["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"  # python leaks by design
    e["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    e["COMPNET_HARNESS_LIB"] = str(lib)
    e["PYTHONPATH"] = os.pathsep.join([str(HARNESS), str(HERE)] + sys.path)
    return e


def run(env, args, timeout=600):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=HARNESS)


def test_kernels_match_the_cpu_driver(env):
    # --capture=sys: a sanitizer report (written to fd 2 before the process aborts) reaches us
    r = run(env, ["-m", "pytest", "-q", "--capture=sys", "-p", "no:cacheprovider",
                  "emulated_cases.py"])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-6000:]


def broken(env, name):
    return run(env, ["broken.py", name], timeout=120)


# Each break must fail, with the harness's or the sanitizer's message.
@pytest.mark.parametrize("name,expect", [
    ("wrong_shuffle", "reads lane 32, outside the warp"),
    ("exited_lane", "but lane 16 has exited"),
    ("divergent", "but lane 1 waits at __shfl_xor_sync"),
    ("no_optin", "65536 bytes of dynamic shared memory, the kernel's limit is 49152"),
])
def test_broken_warp_primitives_are_reported(env, name, expect):
    r = broken(env, name)
    assert r.returncode == 0, r.stderr[-3000:]
    assert expect in r.stdout, r.stdout
    assert name == "no_optin" or f"{name}_kernel" in r.stdout, r.stdout


@pytest.mark.parametrize("name,expect", [
    ("off_by_one", "READ of size 4"),  # thread n reads in[n]
    ("smem_overrun", "WRITE of size 4"),  # lane 31 writes the slot past the block's shared memory
])
def test_memory_errors_abort(env, name, expect):
    r = broken(env, name)
    assert r.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in r.stderr and expect in r.stderr, r.stderr[-3000:]
    assert f"{name}_kernel" in r.stderr


def test_missing_syncwarp_changes_the_result(env):
    # No meeting is skipped, so nothing is reported; but lanes run in a seeded random order
    # between meetings, so lanes read the shared row before lane 0 wrote it (shared memory
    # starts as garbage): out[i] must be i + 1 (mod 32) and is not.
    r = broken(env, "missing_syncwarp")
    assert r.returncode == 0, r.stderr[-3000:]
    out = eval(r.stdout.split("OUT:")[1])
    assert out != [float((i + 1) % 32) for i in range(32)], out
