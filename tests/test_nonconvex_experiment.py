"""Non-convex (sign 0) experiments: compare/run with the difference-of-convex pair (MATH.md
section 7), its stage 1 (fused vs pure PyTorch, determinism), the encoding after stage 1, equal
architectures across kinds, ``compnet reproduce --nonconvex`` and bad input."""
import csv
import json
import math

import pytest
import torch

from compnet_ext import nonconvex as nc
from compnet_ext.experiments import cli
from compnet_ext.experiments.nonconvex_stages import pair_loss, train_pair
from compnet_ext.init import starting_peaks
from compnet_ext.reference import matmul_forward
from compnet_ext.targets import NONCONVEX_TARGETS, get_target
from compnet_ext.train import KINDS, Config, compare, run
from conftest import plot_files

CUBIC = lambda x: x**3 - x
TINY = dict(seeds=2, epochs=(3, 3), points=24, depth=3, threads=1)


def _start(S=3, D=4, dtype=torch.float64, domain=(-1.0, 1.0), N=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    peaks = starting_peaks(S, 2 * D + 1, g, dtype).reshape(S, 2, D + 1)
    x = torch.linspace(*domain, N, dtype=dtype)
    y = CUBIC(x)
    return x, y, peaks, nc.fit_coef(x, y, peaks, domain=domain)


@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("at_least_squares", [False, True])
def test_fused_stage1_steps_match_pure_pytorch_and_are_deterministic(free, at_least_squares):
    x, y, peaks, coef = _start()
    if not at_least_squares:
        coef = coef + 0.05  # off the minimum over coef: every gradient >= 1e-3 (measured)
    scales = nc.smooth_pair_scales(peaks) if free else None
    kw = dict(domain=(-1, 1), epochs=6, lr=1e-2, record_every=1)
    fused = train_pair(x, y, peaks, coef, scales, **kw)
    again = train_pair(x, y, peaks, coef, scales, **kw)
    ref = train_pair(x, y, peaks, coef, scales, reference=True, **kw)
    for a, b in zip(fused, again):  # same build, same inputs: bitwise
        if a is not None:
            assert torch.equal(a, b)
    # Tolerance. The fused and reference gradients differ by rounding only: per component at
    # most d ~ 2 N u max|residual * basis| ~ 2 * 64 * 1.1e-16 * 0.5 ~ 7e-15 absolute (fp64,
    # |y|, |basis| = O(1); peaks in [0.25, 0.75] amplify the peak terms by 1/a^2 <= 16).
    # An Adam step moves a parameter by lr * m_hat / (sqrt(v_hat) + eps):
    # - where |g| >> eps (off the least-squares minimum, every |g| >= 1e-3) the move's
    #   sensitivity to g is O(1 / |g|), so 6 steps differ by < 6 lr 16 d / 1e-3 ~ 7e-12
    #   (measured 1e-16): 1e-11;
    # - at the least-squares start the coefficients' gradients are rounding noise (~1e-16,
    #   far below eps = 1e-8), where the move is lr g / eps: the rounding of g becomes
    #   lr d / eps ~ 7e-9 per step, 4e-8 over 6 steps (measured 9e-11): 5e-8.
    tol = 5e-8 if at_least_squares else 1e-11
    for a, b in zip(fused, ref):
        if a is not None:
            torch.testing.assert_close(a, b, atol=tol, rtol=0)


def test_stage1_lowers_the_loss_and_clamps_the_peaks_like_the_convex_stage():
    x, y, peaks, coef = _start(S=2, D=3)
    _, _, _, loss, curve = train_pair(x, y, peaks, coef, domain=(-1, 1), epochs=150,
                                      record_every=50)
    assert bool((loss < curve[:, 0] / 3).all())
    p, _, _, _, _ = train_pair(x, y, peaks, coef, domain=(-1, 1), epochs=30, lr=0.2,
                               peak_bounds=(0.2, 0.8))
    assert float(p.min()) >= 0.2 and float(p.max()) <= 0.8


def test_least_squares_start_is_the_best_coefficients_for_the_starting_peaks():
    x, y, peaks, coef = _start()
    c = coef.clone().requires_grad_()
    loss = ((nc.reference_forward(x, peaks, c, domain=(-1, 1)) - y) ** 2).mean(dim=1)
    (g,) = torch.autograd.grad(loss.sum(), c)
    # The MSE is quadratic in c: at its minimiser the gradient is zero up to the rounding of
    # sums of 64 products of O(1) values (~1e-15); 1e-11 leaves a wide margin.
    assert float(g.abs().max()) < 1e-11


@pytest.mark.parametrize("free", [False, True])
def test_encoding_after_stage1_is_the_stage1_function(free):
    domain = (-3.0, 2.0)
    x, y, peaks, coef = _start(domain=domain)
    scales = nc.smooth_pair_scales(peaks) if free else None
    p, s, c, loss, _ = train_pair(x, y, peaks, coef, scales, domain=domain, epochs=20)
    xs = torch.linspace(*domain, 301, dtype=torch.float64)
    # fp64, depth 4, |coef| = O(1): the tolerance of tests/test_nonconvex.py (1e-12).
    torch.testing.assert_close(matmul_forward(xs, nc.encode(p, c, s, domain=domain)),
                               nc.forward(xs, p, c, s, domain=domain), atol=1e-12, rtol=0)


def test_compare_sign0_runs_all_kinds_with_equal_architecture_and_parameter_count():
    x, res = run({"cubic": (CUBIC, 0)}, domain=(-1, 1), keep_layers=True, **TINY)
    assert list(res["cubic"]) == list(KINDS)
    assert float(x[0]) == -1 and float(x[-1]) == 1
    widths, counts = set(), set()
    for kind, r in res["cubic"].items():
        assert r.final.shape == (2,) and bool(torch.isfinite(r.final).all()), kind
        widths.add((1,) + tuple(W.shape[1] for W, _ in r.mlp_layers))
        counts.add(sum(W[0].numel() + b[0].numel() for W, b in r.mlp_layers))
    assert widths == {(1, 9, 9, 9, 1)}  # depth 3: widths (1, 9, 9, 9, 1)
    assert counts == {2 * 9 + 2 * (9 * 9 + 9) + 9 + 1}  # 208 parameters, every kind
    for kind in ("not_enforced", "enforced"):
        r = res["cubic"][kind]
        assert r.peaks.shape == (2, 2, 4) and r.coef.shape == (2, 4)
        assert (r.scales is None) == (kind == "enforced")
    # compare is run's finals; a named target brings its sign and domain
    finals = compare(CUBIC, sign=0, domain=(-1, 1), **TINY)
    for kind in KINDS:
        assert torch.equal(finals[kind], res["cubic"][kind].final)
    named = compare("cubic", None, **TINY)
    assert all(torch.equal(named[k], finals[k]) for k in KINDS)


def test_stage2_starts_where_stage1_ended_and_kinds_3_to_5_share_their_start():
    """In fp64 the stage-2 curve's first point (the encoded network's loss before any weight
    step) is the stage-1 pair's loss: the encoding carried the function over."""
    cfg = dict(TINY, epochs=(8, 4), dtype=torch.float64)
    x, res = run({"cubic": (CUBIC, 0)}, domain=(-1, 1), **cfg)
    y = CUBIC(x)
    E0 = cfg["epochs"][0]
    for kind in ("not_enforced", "enforced"):
        r = res["cubic"][kind]
        want = pair_loss(x, y, r.peaks, r.coef, r.scales, domain=(-1, 1))
        # MSE of values O(1) with errors ~1e-15: agreement to 1e-13 absolute
        torch.testing.assert_close(r.curve[E0], want, atol=1e-13, rtol=0)
    start = [res["cubic"][k].curve[0] for k in ("no_pretraining", "not_enforced", "enforced")]
    for c in start[1:]:
        torch.testing.assert_close(c, start[0], atol=1e-13, rtol=0)


def test_step_by_step_engine_gives_the_fused_engines_numbers():
    fused = compare(CUBIC, 0, domain=(-1, 1), **TINY)
    steps = compare(CUBIC, 0, domain=(-1, 1), fused=False, **TINY)
    for k in KINDS:
        assert torch.equal(fused[k], steps[k]), k


@pytest.mark.parametrize("sign", [2, -2, 0.5, True, None])
def test_bad_sign_is_named(sign):
    with pytest.raises(ValueError, match="`sign`"):
        compare(CUBIC, sign, domain=(-1, 1), **TINY)


@pytest.mark.parametrize("domain", [(1, 1), (1, -1), (0, math.inf), (math.nan, 1)])
def test_bad_domain_is_named(domain):
    with pytest.raises(ValueError, match="`domain`"):
        compare(CUBIC, 0, domain=domain, **TINY)
    with pytest.raises(ValueError, match="`domain`"):
        Config(domain=domain)


def test_domain_not_a_pair_is_a_type_error():
    with pytest.raises(TypeError, match="`domain`"):
        Config(domain=3)


def test_what_sign_0_and_domains_need():
    with pytest.raises(ValueError, match="`domain`.*needs sign-0"):
        compare(lambda x: x**3, -1, domain=(-1, 1), **TINY)
    with pytest.raises(ValueError, match="sign-0 targets .* cannot share a run"):
        run({"a": (CUBIC, 0), "b": (lambda x: x**3, -1)}, **TINY)
    with pytest.raises(ValueError, match="`width` must be 9"):
        compare(CUBIC, 0, domain=(-1, 1), width=4, **TINY)
    with pytest.raises(ValueError, match="`width` must be 4"):
        compare(lambda x: x**3, -1, width=9, **TINY)
    # weight-only kinds may take any width
    assert set(compare(CUBIC, 0, domain=(-1, 1), width=5, kinds="default", **TINY)) == {"default"}


def test_nonconvex_targets_have_sign_0_and_their_domain():
    for name in NONCONVEX_TARGETS:
        t = get_target(name)
        lo, hi = t.domain
        assert t.sign == 0 and lo < hi
        assert bool(torch.isfinite(t.fn(torch.linspace(lo, hi, 11))).all())
    assert get_target("cubic").domain == (-1.0, 1.0)
    assert get_target("x3").domain == (0.0, 1.0)


def test_cli_nonconvex_quick_writes_the_files(tmp_path, capsys, monkeypatch):
    # --quick's own size (6 seeds, 300 + 300 steps) takes ~10 s here; the path is the same.
    monkeypatch.setattr(cli, "QUICK", {"seeds": 2, "epochs": (4, 4)})
    out = tmp_path / "nc"
    argv = ["reproduce", "--nonconvex", "--quick", "--points", "32", "--depth", "3",
            "--threads", "1", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "**Non-convex targets (sign 0).**" in printed and "paper" not in printed.split("\n")[2]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["results.csv", "results.json", *plot_files("best_fits.png", "loss_curves.png")])
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"] == "reproduce --nonconvex"
    assert doc["config"]["width"] == 9 and doc["config"]["seeds"] == 2
    assert doc["config"]["domains"]["periodic"] == [-2 * math.pi, 2 * math.pi]
    assert list(doc["results"]) == list(NONCONVEX_TARGETS)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["target"], r["kind"]) for r in rows] == [(t, k) for t in NONCONVEX_TARGETS
                                                        for k in KINDS]
    assert all(float(r["min"]) <= float(r["mean"]) for r in rows)


def test_cli_nonconvex_picks_targets_and_rejects_convex_ones(tmp_path, capsys):
    argv = ["reproduce", "--nonconvex", "cubic", "--seeds", "1", "--epochs", "2,2", "--points",
            "16", "--depth", "2", "--kinds", "enforced", "--no-plots", "--no-progress", "--out",
            str(tmp_path / "a")]
    assert cli.main(argv) == 0
    assert list(json.loads((tmp_path / "a" / "results.json").read_text())["results"]) == ["cubic"]
    for bad, says in ((["--nonconvex", "x3"], "unknown 'x3'"),
                      (["--nonconvex", "--targets", "x3"], "--targets picks convex targets")):
        with pytest.raises(SystemExit) as e:
            cli.main(["reproduce", *bad, "--out", str(tmp_path / "b")])
        assert e.value.code == 2 and says in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["plot", "fit", "--target", "cubic", "--out", str(tmp_path / "f.png")])
    assert "reproduce --nonconvex" in capsys.readouterr().err
