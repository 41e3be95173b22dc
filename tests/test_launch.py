"""How the `compnet` command starts and ends around torchrun and Ctrl-C (issue 18): a world of
1 needs no rendezvous; torchrun's variables and timeouts are checked at the start; only rank 0
speaks (usage errors, Ctrl-C); Ctrl-C while the package loads is one line and exit 130."""
import signal
import subprocess
import sys
import time

import pytest

from compnet_ext.experiments import cli
from compnet_ext.experiments.distributed import World

TINY = ["sweep", "--depths", "2", "--seeds", "2", "--epochs", "2,2", "--points", "8",
        "--targets", "x3", "--kinds", "default", "--no-progress", "--no-plots"]
TORCHRUN = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29999"}


def _env(monkeypatch, **env):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
              "COMPNET_RANK_TIMEOUT", "COMPNET_DIST_TIMEOUT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_a_world_of_one_runs_without_torchrun(tmp_path, monkeypatch, capsys):
    _env(monkeypatch, RANK="0", WORLD_SIZE="1")
    assert not World.from_env().launched
    assert cli.main([*TINY, "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize("env, names", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR and MASTER_PORT"),
    ({**TORCHRUN, "COMPNET_RANK_TIMEOUT": "abc"}, "COMPNET_RANK_TIMEOUT"),
    ({**TORCHRUN, "COMPNET_DIST_TIMEOUT": "0"}, "COMPNET_DIST_TIMEOUT"),
    ({**TORCHRUN, "RANK": "x"}, "RANK/WORLD_SIZE/LOCAL_RANK must be ints"),
])
def test_bad_launch_variables_are_one_usage_error_at_the_start(tmp_path, monkeypatch, capsys,
                                                               env, names):
    _env(monkeypatch, **env)
    with pytest.raises(SystemExit) as e:
        cli.main([*TINY, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert names in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("compnet sweep: error:")
    assert not (tmp_path / "o").exists()  # before any work, the folder unclaimed


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_rank_0_says_a_usage_error(tmp_path, monkeypatch, capsys, rank):
    _env(monkeypatch, **{**TORCHRUN, "RANK": rank, "LOCAL_RANK": rank})
    for argv in (["reproduce", "--nonconvex", "--out", str(tmp_path / "o")],
                 ["sweep", "--seeds", "0"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert ("error:" in err) == (rank == "0"), err


@pytest.mark.parametrize("rank", ["0", "1"])
def test_ctrl_c_only_rank_0_speaks(monkeypatch, capsys, tmp_path, rank):
    _env(monkeypatch, RANK=rank)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_plot", interrupted)
    assert cli.main(["plot", "neurons", "--out", str(tmp_path / "p.png")]) == 130
    err = capsys.readouterr().err
    assert ("interrupted" in err) == (rank == "0") and "Traceback" not in err


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_the_package_loads(tmp_path):
    # The import is where the interrupt lands, deterministically.
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    if name.startswith('compnet_ext'):\n"
            "        raise KeyboardInterrupt\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            "import compnet_cli\n"
            "sys.argv = ['compnet', 'plot', 'neurons', '--out', 'p.png']\n"
            "sys.exit(compnet_cli.main())\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "compnet: interrupted while starting; nothing written"


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_a_real_ctrl_c_while_loading_gives_one_line(tmp_path, delay):
    # 'ready' once the entry module is in (what the script does first), then SIGINT while
    # compnet_ext and torch load (0.3 s or more) or soon after
    code = ("import sys, compnet_cli\nprint('ready', flush=True)\n"
            "sys.argv = ['compnet', *sys.argv[1:]]\nsys.exit(compnet_cli.main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, *TINY, "--out", "o"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
