"""The sparse-data test (``compnet reproduce --sparse``, compnet_ext.train.run_sparse): where the
points lie, the test measurements, the engines agreeing with themselves, the command's files,
and bad input (docs/reproduce.md, "Sparse data")."""
import csv
import json
from fractions import Fraction

import pytest
import torch

from compnet_ext import train
from compnet_ext.batched_mlp import BatchedMLP
from compnet_ext.experiments import cli, sparse
from compnet_ext.experiments.config import resolve_device
from compnet_ext.targets import select
from conftest import plot_files

TINY = dict(seeds=2, epochs=(4, 5), kinds=("default", "no_pretraining", "enforced"))


def _run(**kw):
    return train.run_sparse(select(("x3", "sin")), **{**TINY, **kw})


def test_points_lie_as_documented_and_are_disjoint():
    x_train, x_test = train.sparse_points(dtype=torch.float64)
    assert x_train.tolist() == [i / 9 for i in range(10)]
    assert x_train[0] == 0 and x_train[-1] == 1  # the ends are training data
    assert x_test.tolist() == [(2 * j + 1) / 20 for j in range(10)]
    # disjoint in exact arithmetic, not only after rounding
    exact_train = {Fraction(i, 9) for i in range(10)}
    assert not exact_train & {Fraction(2 * j + 1, 20) for j in range(10)}
    assert float((x_test[:, None] - x_train[None, :]).abs().min()) > 1e-3
    assert sparse.TRAIN_POINTS == sparse.TEST_POINTS == 10


def test_grids_that_share_a_point_are_rejected():
    with pytest.raises(ValueError, match="share a point"):
        sparse.sparse_points(3, 1)  # 1/2 in both
    with pytest.raises(ValueError, match="`train`"):
        sparse.sparse_points(1, 10)


def test_results_measure_the_trained_networks_on_the_test_points():
    x_train, x_test, res = _run()
    assert list(res) == ["x3", "sin"] and list(res["x3"]) == list(TINY["kinds"])
    # Recomputed as the run computed them, so bitwise: the targets' values on the CPU, the
    # networks through the same forward op on the device the run trained on (auto: CUDA on a GPU
    # host, whose last bits differ from the CPU's).
    dev = resolve_device("auto")
    for name, per_kind in res.items():
        fn = select((name,))[name][0]
        y_train, y_test = fn(x_train).to(dev), fn(x_test).to(dev)
        for kind, r in per_kind.items():
            mlp = BatchedMLP.from_layers([(W.to(dev), b.to(dev)) for W, b in r.layers])
            with torch.no_grad():
                test = ((mlp(x_test.to(dev)) - y_test) ** 2).mean(-1).cpu()
                fit = ((mlp(x_train.to(dev)) - y_train) ** 2).mean(-1).cpu()
            assert torch.equal(r.test, test) and torch.equal(r.train, fit)
            assert torch.equal(r.test_curve[:, -1], r.test)
            assert torch.equal(r.best_test, r.test_curve.min(1).values)
            first = 4 if kind == "enforced" else 0  # stage-2 kinds start after stage 1
            assert r.steps.tolist() == list(range(first, 10))
            assert r.test_curve.shape == r.train_curve.shape == (2, 10 - first)
            assert all(first <= s <= 9 for s in r.best_step.tolist())
            assert torch.isfinite(r.test_curve).all() and torch.isfinite(r.train_curve).all()


def test_measuring_between_steps_does_not_change_training():
    # Launches of test_every steps carry Adam's state: the same networks as one launch, bitwise.
    _, _, every = _run(test_every=1)
    _, _, once = _run(test_every=1000)
    for name in every:
        for kind in every[name]:
            a, b = every[name][kind], once[name][kind]
            assert torch.equal(a.test, b.test)
            assert all(torch.equal(u, v) for la, lb in zip(a.layers, b.layers)
                       for u, v in zip(la, lb))
            assert b.test_curve.shape[1] == 2  # start and end only


def test_fused_equals_step_by_step():
    _, _, fused = _run()
    _, _, steps = _run(fused=False)
    for name in fused:
        for kind in fused[name]:
            assert torch.equal(fused[name][kind].test_curve, steps[name][kind].test_curve)
            assert torch.equal(fused[name][kind].train_curve, steps[name][kind].train_curve)


def test_starts_from_the_draws_of_the_convex_experiment():
    _, _, res = _run(epochs=(0, 0), kinds=("default",))
    _, ref = train.run(select(("x3",)), seeds=2, epochs=(0, 0), kinds=("default",),
                       keep_layers=True)
    for (W, b), (W0, b0) in zip(res["x3"]["default"].layers, ref["x3"]["default"].mlp_layers):
        assert torch.equal(W, W0) and torch.equal(b, b0)


def test_defaults_are_the_later_versions_settings():
    assert sparse.SPARSE_SETTINGS["lr_peaks"] == sparse.SPARSE_SETTINGS["lr_weights"] == 1e-3
    assert set(sparse.LATER_VERSION) == {"x3", "x11", "sin", "tanh3"}


@pytest.mark.parametrize("kw, match", [
    (dict(x_test=torch.tensor([0.5, 1.0])), "share points"),
    (dict(x_train=torch.zeros(2, 3)), "`x_train`"),
    (dict(x_test=[0.5]), "`x_test`"),
    (dict(x_test=torch.tensor([float("nan")])), "`x_test`"),
    (dict(test_every=0), "`test_every`"),
    (dict(kinds=("nope",)), "`kinds`"),
    (dict(seeds=0), "`seeds`"),
])
def test_bad_input_names_the_argument(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _run(**kw)
    with pytest.raises(ValueError, match="`targets` is empty"):
        train.run_sparse({}, **TINY)


QUICK = ["reproduce", "--sparse", "--quick", "--targets", "x3,tanh3", "--kinds",
         "default,enforced", "--no-progress"]


def test_cli_writes_table_json_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main([*QUICK, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Sparse-data test" in text and "second hand and approximate" in text
    assert "| x^3 | Default Network |" in text and "2.41e-04" in text and "5.09e-06" in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"] == "reproduce --sparse"
    assert doc["files"] == ["results.csv", *plot_files("best_fits.png", "loss_curves.png"),
                            "results.json"]
    cfg = doc["config"]
    assert cfg["seeds"] == cli.QUICK["seeds"] and cfg["epochs"] == list(cli.QUICK["epochs"])
    assert cfg["x_train"] == pytest.approx([i / 9 for i in range(10)])
    assert cfg["x_test"] == pytest.approx([(2 * j + 1) / 20 for j in range(10)])
    assert cfg["lr_peaks"] == 1e-3 and set(cfg["lr_weights"].values()) == {1e-3}
    s = doc["results"]["x3"]["enforced"]
    assert len(s["test"]["per_seed"]) == cli.QUICK["seeds"]
    assert s["test"]["min"] == min(s["test"]["per_seed"])
    assert s["best_test"]["min"] <= s["test"]["min"]
    assert doc["later_version"]["min_test_mse"]["x3"] == {"default": 2.41e-4, "enforced": 5.65e-6}
    assert {c["claim"].split(":")[0] for c in doc["checks"]} == {"x3", "tanh3"}
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["target"], r["kind"]) for r in rows] == [
        ("x3", "default"), ("x3", "enforced"), ("tanh3", "default"), ("tanh3", "enforced")]
    # the CSV holds 7 significant digits
    assert float(rows[0]["test_min"]) == pytest.approx(
        doc["results"]["x3"]["default"]["test"]["min"], rel=1e-6)
    for png in plot_files("best_fits.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_default_folder_and_own_rates(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["reproduce", "--sparse", "--seeds", "2", "--epochs", "2,2", "--targets", "x3",
            "--kinds", "enforced", "--no-progress", "--no-plots", "--lr-peaks", "0.01"]
    assert cli.main(argv) == 0
    doc = json.loads((tmp_path / "compnet-sparse" / "results.json").read_text())
    assert doc["config"]["lr_peaks"] == 0.01 and doc["config"]["lr_weights"]["enforced"] == 1e-3
    assert not (tmp_path / "compnet-results").exists()


@pytest.mark.parametrize("extra, option", [
    (["--points", "20"], "--points"),
    (["--seeds", "0"], "--seeds"),
    (["--epochs", "5"], "--epochs"),
    (["--targets", "x2"], "--targets"),
])
def test_bad_sparse_options_are_usage_errors(tmp_path, capsys, extra, option):
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--sparse", *extra, "--out", str(tmp_path / "never")])
    assert e.value.code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_unusable_out_is_a_usage_error_before_training(tmp_path, capsys, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("trained although --out is unusable")

    monkeypatch.setattr(sparse, "run", fail)
    (tmp_path / "f").write_text("x")
    for out in ("", str(tmp_path / "f")):
        with pytest.raises(SystemExit) as e:
            cli.main(["reproduce", "--sparse", "--quick", "--out", out])
        assert e.value.code == 2 and "--out" in capsys.readouterr().err
