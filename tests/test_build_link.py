"""The extension's link to the C++ and OpenMP runtimes (issue 17): its C++ errors arrive in Python
as exceptions, it uses the process's shared libstdc++ and torch's one OpenMP runtime, and the
build (build_tools/link_check.py) keeps libstdc++ shared under a compiler that links it
statically, or stops with the compiler's name and the fix."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import compnet_ext
import link_check  # build_tools/, on the tests' path (pyproject: pythonpath)

pytestmark = pytest.mark.skipif(not link_check.LINUX, reason="ELF and /proc/self/maps: Linux only")

BUILD_TOOLS = os.path.dirname(os.path.abspath(link_check.__file__))
OPENMP_RUNTIMES = ("libgomp", "libiomp", "libomp")


def _run(args, cwd=BUILD_TOOLS, **env):
    # Never the source tree as cwd: `python -c` puts the cwd first on sys.path, and the source
    # tree's compnet_ext (no _C in it unless built in place) would shadow the installed one.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([BUILD_TOOLS, os.environ.get("PYTHONPATH", "")]),
           **env}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _python(code, **kwargs):
    return _run([sys.executable, "-c", textwrap.dedent(code)], **kwargs)


def test_cxx_errors_arrive_in_python_as_exceptions():
    # The op itself (no Python checks in front), in a subprocess: with a second C++ runtime in the
    # extension this call is a SIGSEGV, which would take pytest down with it.
    r = _python("""
        import torch, compnet_ext
        try:
            torch.ops.compnet_ext.forward(torch.rand(3), torch.tensor([[0.0, 0.5]]), None, -1, True)
        except RuntimeError as e:
            print("RuntimeError:", e)
        """)
    assert r.returncode == 0, f"exit status {r.returncode} (negative: killed by that signal)\n{r.stderr}"
    assert "RuntimeError:" in r.stdout
    assert "`peaks` must lie in the open interval (0, 1)" in r.stdout


def test_extension_uses_the_process_runtimes():
    link_check.check_shared_libstdcxx(compnet_ext._C.__file__, "that built the installed extension")
    # A fresh process: what torch loads, then what importing and running the extension adds.
    r = _python(f"""
        import json, torch
        from link_check import mapped_libraries
        before = mapped_libraries({OPENMP_RUNTIMES!r})
        import compnet_ext
        torch.set_num_threads(2)
        peaks = torch.rand(64, 6, dtype=torch.float64) * 0.8 + 0.1
        compnet_ext.forward(torch.rand(100000, dtype=torch.float64), peaks)  # parallel regions
        print(json.dumps(dict(before=before, after=mapped_libraries({OPENMP_RUNTIMES!r}),
                              libstdcxx=mapped_libraries(("libstdc++",)))))
        """)
    assert r.returncode == 0, r.stderr
    maps = json.loads(r.stdout)
    assert len(maps["libstdcxx"]) == 1, maps
    assert len(maps["after"]) == 1, f"not one OpenMP runtime in the process: {maps}"
    assert maps["before"] in ([], maps["after"]), f"the extension brought its own: {maps}"


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf to compare with")
def test_needed_libraries_reads_what_readelf_reads():
    path = compnet_ext._C.__file__
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    expected = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
    assert expected and link_check.needed_libraries(path) == expected


# A compiler that links libstdc++ statically, as the GPU host's did: g++ with -static-libstdc++
# appended after everything the build passes. A tiny extension goes through the build class that
# setup.py uses, with the link flags of setup.py (fixed) or none (the guard must stop it).
TINY_SETUP = """
import sys
from setuptools import Extension, setup
from link_check import CheckedBuildExtension, link_args
flags = link_args() if sys.argv.pop() == "fixed" else []
setup(name="tiny", ext_modules=[Extension("tiny", ["tiny.cpp"], extra_link_args=flags)],
      cmdclass={"build_ext": CheckedBuildExtension}, script_args=["build_ext", "--inplace"])
"""


def _build_tiny(tmp_path, flags):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("needs g++")
    wrapper = tmp_path / "static-g++"
    wrapper.write_text(f'#!/bin/sh\nexec "{gxx}" "$@" -static-libstdc++\n')
    wrapper.chmod(0o755)
    (tmp_path / "tiny.cpp").write_text(
        '#include <stdexcept>\nextern "C" void tiny_throw() { throw std::runtime_error("tiny"); }\n')
    (tmp_path / "setup_tiny.py").write_text(TINY_SETUP)
    r = _run([sys.executable, "setup_tiny.py", flags], cwd=tmp_path, CXX=str(wrapper))
    return r, wrapper, list(tmp_path.rglob("tiny*.so"))


def test_the_link_flags_keep_libstdcxx_shared_under_a_static_compiler(tmp_path):
    r, _, built = _build_tiny(tmp_path, "fixed")
    assert r.returncode == 0, r.stdout + r.stderr
    assert built
    for path in built:  # build/lib/... and its copy in place
        assert any(n.startswith("libstdc++.so") for n in link_check.needed_libraries(path))


def test_the_guard_stops_a_static_link_naming_the_compiler(tmp_path):
    r, wrapper, built = _build_tiny(tmp_path, "none")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "linked libstdc++ statically" in out
    assert f"CXX='{wrapper}'" in out and "CXX=/usr/bin/g++ pip install" in out
    assert built == [], "the statically linked library must not be left behind"
