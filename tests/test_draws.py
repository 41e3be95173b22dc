"""Repeated draws (``--draws R``, ``Config.draws``; docs/training.md, "Draws"): R = 1 is a single
run's output unchanged; draw r of a run with draws is the single run with master seed
seed + r, bit for bit, whatever R and the other draws; the interval statistics; the options'
checks; the files' fields."""
import csv
import json

import pytest
import torch

from compnet_ext.experiments import cli, draws, engine, sparse
from compnet_ext.experiments.config import SEED_MAX, Config
from compnet_ext.targets import select

SMALL = dict(seeds=3, points=24, epochs=(6, 6))
TINY = ["--seeds", "3", "--epochs", "6,6", "--points", "24", "--targets", "x3,sin",
        "--no-progress", "--no-plots"]


def _run(tmp_path, name, *extra, command="reproduce"):
    out = tmp_path / name
    assert cli.main([command, *TINY, "--out", str(out), *extra]) == 0
    return out


def _json(folder):
    with open(folder / "results.json") as f:
        return json.load(f)


def test_one_draw_is_the_single_run_bitwise(tmp_path, capsys):
    plain = _run(tmp_path, "plain")
    printed = capsys.readouterr().out
    one = _run(tmp_path, "one", "--draws", "1")
    again = capsys.readouterr().out
    assert (plain / "results.csv").read_bytes() == (one / "results.csv").read_bytes()
    a, b = _json(plain), _json(one)
    a.pop("wall_seconds"), b.pop("wall_seconds")
    assert a == b
    # ... and in a single run's format: no draw columns or fields appear
    with open(plain / "results.csv") as f:
        assert next(csv.reader(f)) == ["target", "kind", "min", "median", "mean", "paper_min",
                                       "paper_mean", "seeds"]
    assert "draws" not in a["config"] and all("holds_in" not in c for c in a["checks"])
    assert set(a["results"]["x3"]["enforced"]) == {"min", "mean", "median", "per_seed"}
    strip = lambda text: [l for l in text.splitlines() if " s. Wrote " not in l]  # wall time
    assert strip(printed.replace(str(plain), "")) == strip(again.replace(str(one), ""))


@pytest.mark.parametrize("fused", [True, False])
def test_draw_r_is_the_single_run_with_master_seed_seed_plus_r(fused):
    targets = select(["x3", "sin"])
    _, many = engine.run(targets, seed=7, draws=3, fused=fused, **SMALL)
    for r in range(3):
        _, one = engine.run(targets, seed=7 + r, fused=fused, **SMALL)
        rows = slice(3 * r, 3 * r + 3)
        for t in one:
            for k, res in one[t].items():
                assert torch.equal(many[t][k].final[rows], res.final), (r, t, k)
                assert torch.equal(many[t][k].curve[:, rows], res.curve), (r, t, k)


def test_draws_do_not_depend_on_each_other_or_their_count():
    targets = select(["tanh3"])
    _, two = engine.run(targets, seed=3, draws=2, **SMALL)
    _, four = engine.run(targets, seed=2, draws=4, **SMALL)  # seeds 2, 3, 4, 5: 3 and 4 shared
    for k in two["tanh3"]:
        assert torch.equal(two["tanh3"][k].final, four["tanh3"][k].final[3:9])


def test_a_seed_block_of_the_draws_is_rows_of_the_whole():
    targets = select(["x3"])
    _, whole = engine.run(targets, seed=1, draws=2, **SMALL)
    _, block = engine.run(targets, seed=1, draws=2, seed_block=(2, 5), **SMALL)
    for k in whole["x3"]:
        assert torch.equal(whole["x3"][k].final[2:5], block["x3"][k].final)


def test_nonconvex_and_sparse_draws_are_single_runs():
    pair = select(["cubic"])
    _, many = engine.run(pair, seed=4, draws=2, domain=(-1.0, 1.0), **SMALL)
    _, one = engine.run(pair, seed=5, domain=(-1.0, 1.0), **SMALL)
    for k in one["cubic"]:
        assert torch.equal(many["cubic"][k].final[3:], one["cubic"][k].final)
    settings = dict(seeds=3, epochs=(6, 6))
    _, _, many = sparse.run(select(["x3"]), seed=4, draws=2, **settings)
    _, _, one = sparse.run(select(["x3"]), seed=5, **settings)
    for k in one["x3"]:
        assert torch.equal(many["x3"][k].test[3:], one["x3"][k].test)


def test_files_with_draws_hold_each_draw_as_its_single_run(tmp_path):
    many = _json(_run(tmp_path, "many", "--seed", "2", "--draws", "3"))
    with open(tmp_path / "many" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["target", "kind"] + draws.csv_columns() + [
        "paper_min", "paper_min_vs_ours", "paper_mean", "paper_mean_vs_ours", "seeds", "draws"]
    assert {r["seeds"] for r in rows} == {"3"} and {r["draws"] for r in rows} == {"3"}
    assert many["config"]["draws"] == 3 and many["config"]["master_seeds"] == [2, 3, 4]
    for r in range(3):
        single = _json(_run(tmp_path, f"s{r}", "--seed", str(2 + r)))
        for t, per_kind in single["results"].items():
            for k, s in per_kind.items():
                leaf = many["results"][t][k]
                for stat in draws.STATS:
                    assert leaf["draws"][stat][r] == s[stat]
                assert leaf["per_seed"][3 * r:3 * r + 3] == s["per_seed"]
    for per_kind in many["results"].values():
        for leaf in per_kind.values():
            for stat in draws.STATS:
                lo, hi = leaf["interval90"][stat]
                assert lo <= leaf[stat] <= hi
                assert lo >= min(leaf["draws"][stat]) and hi <= max(leaf["draws"][stat])
            assert set(leaf["reference_vs_ours"].values()) <= {"inside", "above", "below"}
    claims = [c for c in many["checks"] if "holds_in" in c]
    assert claims and all(0 <= c["holds_in"] <= 3 and c["holds"] == (c["holds_in"] == 3)
                          and f"holds in {c['holds_in']} of 3 draws" in c["claim"]
                          for c in claims)


def test_sparse_and_sweep_with_draws(tmp_path, capsys):
    sp = tmp_path / "sp"
    assert cli.main(["reproduce", "--sparse", "--seeds", "2", "--epochs", "4,4", "--targets",
                     "x3", "--no-progress", "--no-plots", "--draws", "2", "--out", str(sp)]) == 0
    doc = _json(sp)
    leaf = doc["results"]["x3"]["enforced"]
    assert len(leaf["test"]["draws"]["min"]) == 2 and len(leaf["best_step"]) == 4
    assert leaf["test"]["reference_vs_ours"]["min"] in ("inside", "above", "below")
    assert "over 2 draws" in capsys.readouterr().out.lower()
    sw = tmp_path / "sw"
    assert cli.main(["sweep", "--seeds", "2", "--epochs", "4,4", "--points", "16", "--depths",
                     "2,3", "--kinds", "default,enforced", "--no-progress", "--no-plots",
                     "--draws", "2", "--out", str(sw)]) == 0
    with open(sw / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["draws"] for r in rows} == {"2"}
    assert all(float(r["median_lo"]) <= float(r["median"]) <= float(r["median_hi"])
               for r in rows)


@pytest.mark.parametrize("argv", [["--draws", "0"], ["--draws", "x"], ["--draws", "-1"],
                                  ["--seed", str(SEED_MAX), "--draws", "2"]])
def test_bad_draws_are_one_line_usage_errors(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", *TINY, "--out", str(tmp_path / "o"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--draws" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o").exists()


def test_config_checks_draws():
    with pytest.raises(ValueError, match="draws"):
        Config(draws=0)
    with pytest.raises(ValueError, match="draws"):
        Config(seed=SEED_MAX, draws=2)
    with pytest.raises(ValueError, match="seed_block"):
        Config(seeds=3, draws=2, seed_block=(0, 7))
    assert list(Config(seeds=3, draws=2).rows) == list(range(6))


def test_interval_statistics_and_digits():
    mid, lo, hi = draws.spread([float(v) for v in range(1, 11)])
    assert (mid, lo, hi) == pytest.approx((5.5, 1.45, 9.55))
    assert [draws.placement(v, 1.0, 2.0) for v in (0.5, 1.5, 3.0)] == ["below", "inside",
                                                                      "above"]
    assert draws.digits(1.0, 0.5, 1.5) == 1          # as wide as the median's leading digit
    assert draws.digits(1.64e-7, 1.62e-7, 1.88e-7) == 2  # narrower: the ends must differ
    assert draws.digits(1.0, 0.7, 1.3) == 2
    assert draws.digits(1.0, 0.9996, 1.0004) == 3    # capped
    assert draws.digits(1.0, 1.0, 1.0) == 3
    assert draws.fmt(2.345e-6, 1.1e-6, 4.0e-6) == "2e-06 [1e-06, 4e-06]"
    assert draws.fmt(1.64e-7, 1.62e-7, 1.88e-7) == "1.6e-07 [1.6e-07, 1.9e-07]"


def test_checks_over_draws_count_each_draw():
    per_draw = [{"a": {"v": 1}}, {"a": {"v": 3}}, {"a": {"v": 5}}]
    check = lambda res: [(f"v = {res['a']['v']} > 2", res["a"]["v"] > 2)]
    got = draws.checks_over_draws(check, per_draw, {"a": {"v": 3}})
    assert got == [("v = 3 > 2 (medians over the draws): holds in 2 of 3 draws", False, 2)]
