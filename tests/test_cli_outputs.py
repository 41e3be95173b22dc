"""The CLI's output folder and its endings: --out checked before work, lock, earlier results
deleted, atomic writes, results.json last, counting limits, Ctrl-C, missing matplotlib, and
expected runtime failures as one line (docs/training.md, "Output folder" and "Exit codes")."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import compnet_ext
from compnet_ext.experiments import cli, engine, outdir, reproduce, sweep
from compnet_ext.breakpoints import CountLimitError

TINY = ["--seeds", "2", "--epochs", "3,3", "--points", "16", "--targets", "x3",
        "--kinds", "default,enforced", "--no-progress", "--no-plots"]


def _lines(text):
    return [l for l in text.splitlines() if l.strip()]


@pytest.fixture
def no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("trained although --out is unusable")

    monkeypatch.setattr(engine, "run", fail)


@pytest.mark.parametrize("make, why", [
    (lambda tmp: "", "must name a folder"),
    (lambda tmp: (tmp / "f").write_text("x") and str(tmp / "f"), "existing file"),
    (lambda tmp: (tmp / "f").write_text("x") and str(tmp / "f" / "sub"), "not a writable"),
])
@pytest.mark.parametrize("command", ["reproduce", "sweep"])
def test_unusable_out_is_a_usage_error_before_any_work(tmp_path, capsys, no_training, make, why,
                                                       command):
    with pytest.raises(SystemExit) as e:
        cli.main([command, *TINY, "--out", make(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and why in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_folder_where_no_file_can_be_created(capsys, no_training):
    # /proc exists but takes no new files, even for root (chmod cannot make that for root).
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", *TINY, "--out", "/proc"])
    assert e.value.code == 2 and "is not a writable folder" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_out(tmp_path, capsys, no_training):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(["reproduce", *TINY, "--out", str(ro)])
    finally:
        ro.chmod(0o755)
    assert e.value.code == 2 and "is not a writable folder" in capsys.readouterr().err


def test_a_folder_in_use_is_refused_and_a_stale_lock_is_not(tmp_path, capsys):
    out = tmp_path / "res"
    with outdir.OutDir(str(out)):  # another run holds the folder (flock: another open file)
        with pytest.raises(SystemExit) as e:
            cli.main(["reproduce", *TINY, "--out", str(out)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "in use by another compnet run" in err and f"pid {os.getpid()}" in err
    # A lock file left by a killed run holds no lock: the next run goes ahead and removes it.
    (out / outdir.LOCK_NAME).write_text("pid 999999999 on elsewhere")
    assert cli.main(["reproduce", *TINY, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["results.csv", "results.json"]


def test_earlier_results_are_deleted_and_other_files_kept(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    for name in ("results.json", "best_fits.png", "sweep.png", ".results.csv.123.tmp"):
        (out / name).write_text("old")
    (out / "notes.txt").write_text("mine")
    assert cli.main(["reproduce", *TINY, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["notes.txt", "results.csv", "results.json"]
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"] == "reproduce" and doc["files"] == ["results.csv", "results.json"]
    assert "deleted the earlier run's results.json, best_fits.png, sweep.png" in capsys.readouterr().err


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old")

    def half(f):
        f.write("new, half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        outdir.atomic_write(str(path), half)
    assert os.listdir(tmp_path) == ["results.csv"] and path.read_text() == "old"
    outdir.atomic_write(str(path), lambda f: f.write("new"))
    assert path.read_text() == "new"


def test_interrupt_after_training_keeps_results_csv_and_no_results_json(tmp_path, capsys,
                                                                        monkeypatch):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, "stage1_pieces", interrupt)  # right after results.csv
    out = tmp_path / "res"
    assert cli.main(["reproduce", *TINY, "--out", str(out)]) == 130
    assert _lines(capsys.readouterr().err) == [
        f"compnet reproduce: interrupted; results written so far are in {out}"]
    # no results.json: not complete; lock released; cells/ kept for --resume
    assert sorted(os.listdir(out)) == ["cells", "results.csv"]


def test_count_limit_skips_stage1_counts_and_says_so_once(tmp_path, capsys, monkeypatch):
    def limit(*a, **k):
        raise CountLimitError("counting would need 9 GiB")

    monkeypatch.setattr(reproduce, "stage1_pieces", limit)
    out = tmp_path / "res"
    assert cli.main(["reproduce", *TINY, "--out", str(out)]) == 0
    err = _lines(capsys.readouterr().err)
    assert err == ["compnet: stage-1 piece counts skipped: counting would need 9 GiB"]
    doc = json.loads((out / "results.json").read_text())
    assert doc["stage1_pieces"] is None
    assert doc["skipped"] == {"stage1_pieces": "counting would need 9 GiB"}
    assert doc["results"]["x3"]["enforced"]["per_seed"]  # the training results are all there


def test_sweep_count_limit_keeps_the_rows_and_the_other_counts(tmp_path, capsys, monkeypatch):
    count = sweep.count_pieces

    def limited(layers):
        if len(layers) > 3:  # deeper than 2 hidden layers
            raise CountLimitError("counting would need 9 GiB")
        return count(layers)

    monkeypatch.setattr(sweep, "count_pieces", limited)
    out = tmp_path / "sw"
    argv = ["sweep", *TINY, "--depths", "2:3", "--out", str(out)]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [(r["depth"], bool(r["pieces_min"]), bool(r["mean"])) for r in rows] == [
        ("2", True, True), ("2", True, True), ("3", False, True), ("3", False, True)]
    err = [l for l in _lines(capsys.readouterr().err) if not l.startswith("depth ")]
    assert len(err) == 1 and "2 of 4 rows not counted (depths 3)" in err[0]
    assert "9 GiB" in err[0]
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"] == "sweep" and len(doc["rows"]) == 4
    assert [(n["depth"], n["kind"]) for n in doc["not_counted"]] == [(3, "default"), (3, "enforced")]
    assert "pieces" in doc["skipped"] and doc["files"] == ["sweep.csv", "results.json"]


@pytest.mark.parametrize("error, says", [
    (OSError(28, "No space left on device"), "No space left on device"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 400000000000 bytes"), "out of memory"),
])
def test_expected_runtime_failures_are_one_line_exit_1(tmp_path, capsys, monkeypatch, error, says):
    def fail(*a, **k):
        raise error

    monkeypatch.setattr(engine, "run", fail)
    assert cli.main(["reproduce", *TINY, "--out", str(tmp_path / "res")]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("compnet reproduce: error: ") and says in err[0]


def test_unexpected_errors_keep_their_traceback(tmp_path, monkeypatch):
    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(engine, "run", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["reproduce", *TINY, "--out", str(tmp_path / "res")])
    assert not os.path.exists(tmp_path / "res" / outdir.LOCK_NAME)  # released all the same


# ---------------------------------------------------------------------------------------------
# subprocesses: a real SIGINT, and matplotlib made unimportable


def _env(**extra_paths):
    # The package's own folder on the path, so the subprocess imports this copy (installed or not).
    pkg_parent = os.path.dirname(os.path.dirname(compnet_ext.__file__))
    paths = [*extra_paths.values(), pkg_parent, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "OMP_NUM_THREADS": "1"}


def test_sigint_ends_a_sweep_with_one_line_exit_130_keeping_finished_depths(tmp_path):
    out = tmp_path / "sw"
    # The step-by-step engine returns to Python every epoch, so SIGINT lands at once; 63 depths
    # of 4000 steps each take far longer than this test waits.
    cmd = [sys.executable, "-m", "compnet_ext", "sweep", "--step-by-step", "--depths", "2:64",
           "--epochs", "2000,2000", "--seeds", "2", "--points", "16", "--kinds", "enforced",
           "--no-pieces", "--no-plots", "--no-progress", "--out", str(out)]
    # SIGINT as an interactive program sees it (a background job starts with it ignored)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_env(), cwd=tmp_path,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (out / "sweep.csv").exists():  # depth 2 trained and written
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert _lines(err)[-1] == f"compnet sweep: interrupted; results written so far are in {out}"
    assert [r["depth"] for r in csv.DictReader(open(out / "sweep.csv"))][0] == "2"
    # no results.json, no lock, no temporary; cells/ (the finished work cells) for --resume
    assert sorted(os.listdir(out)) == ["cells", "sweep.csv"]


@pytest.fixture
def no_matplotlib(tmp_path):
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    return _env(fake=str(fake.parent))


def test_reproduce_without_matplotlib_writes_results_and_says_plots_were_skipped(tmp_path,
                                                                                 no_matplotlib):
    out = tmp_path / "res"
    argv = [a for a in TINY if a != "--no-plots"]
    r = subprocess.run([sys.executable, "-m", "compnet_ext", "reproduce", *argv, "--out", str(out)],
                       capture_output=True, text=True, env=no_matplotlib, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    err = _lines(r.stderr)
    assert len(err) == 1 and "plots skipped: matplotlib is missing" in err[0], r.stderr
    assert "pip install matplotlib" in err[0]
    doc = json.loads((out / "results.json").read_text())
    assert doc["files"] == ["results.csv", "results.json"] and "plots" in doc["skipped"]


def test_plot_without_matplotlib_is_one_line_exit_1(tmp_path, no_matplotlib):
    r = subprocess.run([sys.executable, "-m", "compnet_ext", "plot", "fit", "--out",
                        str(tmp_path / "f.png")],
                       capture_output=True, text=True, env=no_matplotlib, cwd=tmp_path, timeout=120)
    assert r.returncode == 1
    assert _lines(r.stderr) == [
        "compnet plot: error: matplotlib is missing (No module named 'matplotlib'); install it "
        "with `pip install matplotlib`"]
    assert not (tmp_path / "f.png").exists()
