"""`compnet reproduce` and `compnet sweep` at tiny sizes: files, schema, table, option errors."""
import csv
import json
import os
import subprocess
import sys

import pytest

from compnet_ext import train
from compnet_ext.experiments import cli
from compnet_ext.experiments.paper import PAPER
from compnet_ext.experiments.plots import matplotlib_missing

TINY = ["--seeds", "2", "--epochs", "4,4", "--points", "32", "--no-progress"]


def test_reproduce_writes_schema_table_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "res"
    assert cli.main(["reproduce", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "**Table 1.**" in text and "**Table 2.**" in text and "Differentiability Enforced" in text
    assert f"{PAPER['x3']['enforced']['mean']:.2e}" in text  # the paper's figure sits beside ours
    doc = json.loads((out / "results.json").read_text())
    assert set(doc) >= {"config", "results", "paper"}
    assert list(doc["results"]) == ["x3", "x11", "sin", "tanh3"]
    for t, per_kind in doc["results"].items():
        assert list(per_kind) == list(train.KINDS)
        for s in per_kind.values():
            assert len(s["per_seed"]) == 2
            assert s["min"] <= s["median"] <= max(s["per_seed"]) and s["min"] <= s["mean"]
    assert doc["paper"]["tanh3"]["enforced"] == PAPER["tanh3"]["enforced"]
    assert doc["config"]["epochs"] == [4, 4] and doc["config"]["seeds"] == 2
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4 * 5
    for png in ("best_fits.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_reproduce_subset_and_same_seed_same_numbers(tmp_path):
    args = ["reproduce", *TINY, "--targets", "sin", "--kinds", "enforced,default", "--no-plots"]
    for name in ("a", "b"):
        assert cli.main([*args, "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("a", "b"))
    assert list(a["results"]) == ["sin"] and list(a["results"]["sin"]) == ["default", "enforced"]
    assert a["results"] == b["results"]
    assert not os.path.exists(tmp_path / "a" / "best_fits.png")


@pytest.mark.parametrize("argv, option", [
    (["reproduce", "--kinds", "default,bogus"], "--kinds"),
    (["reproduce", "--targets", "x4"], "--targets"),
    (["reproduce", "--depth", "0"], "--depth"),
    (["reproduce", "--seeds", "0"], "--seeds"),
    (["reproduce", "--epochs", "5,-1"], "--epochs"),
    (["reproduce", "--epochs", "5"], "--epochs"),
    (["reproduce", "--lr-weights", "enforced=-1"], "--lr-weights"),
    (["reproduce", "--depth", "65"], "--depth"),  # nn.MAX_HIDDEN, the fused kernels' limit
    (["reproduce", "--lr-peaks", "inf"], "--lr-peaks"),
    (["reproduce", "--lr-peaks", "nan"], "--lr-peaks"),
    (["reproduce", "--lr-weights", "inf"], "--lr-weights"),
    (["reproduce", "--lr-weights", "raai=inf"], "--lr-weights"),
    (["reproduce", "--lr-weights", "raai=1=2"], "--lr-weights"),
    (["reproduce", "--seed", "1e20"], "--seed"),
    (["reproduce", "--seed", str(2**64)], "--seed"),
    (["reproduce", "--seed", "-1"], "--seed"),
    (["reproduce", "--threads", "100000"], "--threads"),  # once a segfault in OpenMP
    (["reproduce", "--points", "1"], "--points"),
    (["reproduce", "--device", "tpu"], "--device"),
    (["sweep", "--depths", "0:3"], "--depths"),
    (["sweep", "--depths", "5:2"], "--depths"),
    (["sweep", "--depths", "60:65"], "--depths"),
    (["sweep", "--targets", ""], "--targets"),
])
def test_bad_options_are_usage_errors(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--out", str(tmp_path / "never")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert option in err.splitlines()[-1] and "Traceback" not in err
    assert not os.path.exists(tmp_path / "never")  # nothing ran


@pytest.mark.parametrize("argv, option", [
    (["--width", "17", "--kind", "default"], "--width"),  # nn.MAX_WIDTH
    (["--depth", "65"], "--depth"),
    (["--dpi", "0"], "--dpi"),
    (["--seed", "1e20"], "--seed"),
    (["--out", ""], "--out"),
    (["--out", "."], "--out"),  # a folder
    (["--out", "{tmp}/no/such/folder.png"], "--out"),
    pytest.param(["--out", "{tmp}/fit.txt"], "--out",  # a format matplotlib does not write:
                 marks=pytest.mark.skipif(matplotlib_missing() is not None,  # it says which
                                          reason="needs matplotlib")),
])
def test_bad_plot_options_are_usage_errors(tmp_path, capsys, argv, option):
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "fit.png")]
    with pytest.raises(SystemExit) as e:
        cli.main(["plot", "fit", *argv])
    assert e.value.code == 2
    assert option in capsys.readouterr().err.splitlines()[-1]
    assert os.listdir(tmp_path) == []


def test_repeated_targets_and_kinds_count_once(tmp_path, capsys):
    out = tmp_path / "res"
    assert cli.main(["reproduce", *TINY, "--targets", "x3,x3", "--kinds", "raai,raai",
                     "--no-plots", "--out", str(out)]) == 0
    assert "1 target(s) x 1 kind(s)" in capsys.readouterr().out
    assert list(json.loads((out / "results.json").read_text())["results"]) == ["x3"]


def test_sweep_counts_pieces_exactly(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", "--depths", "2:3", "--kinds", "default,enforced", "--seeds", "2",
            "--epochs", "0,0", "--points", "32", "--no-progress", "--no-plots", "--out", str(out)]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [(int(r["depth"]), r["kind"]) for r in rows] == [
        (2, "default"), (2, "enforced"), (3, "default"), (3, "enforced")]
    by = {(int(r["depth"]), r["kind"]): r for r in rows}
    for d in (2, 3):
        # Untrained encoded starting networks have 2^D pieces (float32 weight rounding can add a
        # tiny extra one, so >=); default networks have far fewer at these depths.
        enf, dfl = by[(d, "enforced")], by[(d, "default")]
        assert int(enf["pieces_min"]) >= 2**d
        assert 1 <= int(dfl["pieces_min"]) <= int(dfl["pieces_max"]) < int(enf["pieces_min"])
    assert "| 3 | x3 | enforced |" in capsys.readouterr().out


def test_python_dash_m_entry_point(tmp_path):
    # Run outside the source tree: `python -m` puts the working directory first on sys.path, and
    # the source folder (no compiled extension in a non-editable install) would shadow the package.
    r = subprocess.run([sys.executable, "-m", "compnet_ext", "reproduce", "--help"],
                       capture_output=True, text=True, env={**os.environ}, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0 and "--quick" in r.stdout and "--epochs" in r.stdout
