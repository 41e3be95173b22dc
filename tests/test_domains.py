"""Domains: a named target carries its own everywhere; what a dtype cannot compute on is refused
at construction, by name (checks.check_domain); every kind of a sign-0 run gets the same input."""
import math

import pytest
import torch

from compnet_ext import checks, nonconvex, targets
from compnet_ext.activation import CompositionalActivation
from compnet_ext.batched_mlp import BatchedMLP
from compnet_ext.experiments.config import Config
from compnet_ext.experiments.engine import compare, run

TINY = dict(seeds=2, epochs=(5, 5), points=50)


def test_a_named_target_keeps_its_domain_with_a_config():
    with_config = compare("periodic", None, Config(**TINY))
    with_keywords = compare("periodic", None, **TINY)
    on_own = compare("periodic", None, **TINY, domain=targets.get_target("periodic").domain)
    for k in with_config:
        assert torch.equal(with_config[k], with_keywords[k])
        assert torch.equal(with_config[k], on_own[k])
    x, _ = run(targets.select(["periodic"]), Config(**TINY, kinds=("enforced",)))
    assert (float(x[0]), float(x[-1])) == pytest.approx((-2 * math.pi, 2 * math.pi))
    x, _ = run(targets.select(["periodic"]), Config(**TINY, kinds=("enforced",), domain=(-1, 1)))
    assert (float(x[0]), float(x[-1])) == (-1.0, 1.0)  # an explicit domain still wins


def test_named_targets_of_different_domains_do_not_share_a_run():
    with pytest.raises(ValueError, match="domains differ"):
        run(targets.select(["periodic", "cubic"]), **TINY)


# (domain, dtype, what the message says)
BAD = [
    ((-1e300, 1e300), torch.float32, "too large"),
    ((-3e38, 3e38), torch.float32, "too large"),  # ends fit, hi - lo does not
    ((0.0, 1e-39), torch.float32, "too narrow for torch.float32"),
    ((0.0, 1e-40), torch.float32, "too narrow for torch.float32"),
    ((0.0, 1e-160), torch.float64, "too narrow for torch.float64"),
    ((1e10, 1e10 + 1), torch.float32, "too narrow for its offset"),
    ((1e7, 1e7 + 1), torch.float32, "too narrow for its offset"),
    ((1e14, 1e14 + 1), torch.float64, "too narrow for its offset"),
]


@pytest.mark.parametrize("domain, dtype, why", BAD)
def test_what_the_dtype_cannot_represent_is_refused_at_construction(domain, dtype, why):
    with pytest.raises(ValueError, match=f"`domain`.*{why}"):
        checks.check_domain(domain, dtype)
    with pytest.raises(ValueError, match=f"`domain`.*{why}"):
        Config(domain=domain, dtype=dtype)
    with pytest.raises(ValueError, match=f"`domain`.*{why}"):
        CompositionalActivation(2, 3, domain=domain, dtype=dtype)
    peaks = torch.full((1, 2, 3), 0.5, dtype=dtype)
    coef = torch.zeros(1, 4, dtype=dtype)
    with pytest.raises(ValueError, match=f"`domain`.*{why}"):
        nonconvex.encode(peaks, coef, domain=domain)
    with pytest.raises(ValueError, match=f"`domain`.*{why}"):
        compare(lambda x: x, 0, seeds=1, epochs=(0, 0), points=4, domain=domain, dtype=dtype)


def test_a_layer_is_not_converted_to_a_dtype_its_domain_breaks():
    layer = CompositionalActivation(2, 3, domain=(0.0, 1e-39), dtype=torch.float64)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    for convert in (lambda m: m.float(), lambda m: m.to(torch.float32),
                    lambda m: torch.nn.Sequential(torch.nn.Identity(), m).float()):
        with pytest.raises(ValueError, match="`domain`.*too narrow for torch.float32"):
            convert(layer)
    for convert in (lambda m: m.half(), lambda m: m.to(torch.bfloat16)):
        with pytest.raises(TypeError, match="torch.float32 or torch.float64.*autocast"):
            convert(layer)
    after = layer.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    ok = CompositionalActivation(2, 3, dtype=torch.float64).float()  # a domain float32 holds
    assert ok.peaks.dtype == torch.float32
    assert all(p.dtype == torch.float64 for p in ok.to_relu().double().parameters())


@pytest.mark.parametrize("domain, dtype", [
    ((-1e37, 1e37), torch.float32), ((0.0, 2e-19), torch.float32), ((1e3, 1e3 + 1), torch.float32),
    ((1e7, 1e7 + 1), torch.float64), ((-1e300, 1e300), torch.float64),
])
def test_domains_at_the_edges_that_pass_give_finite_results(domain, dtype):
    lo, hi = domain
    fn = lambda x: torch.sin(6 * ((x - lo) / (hi - lo)))  # of u: finite on any domain
    res = compare(fn, 0, seeds=2, epochs=(5, 5), points=50, domain=domain, dtype=dtype)
    for k, v in res.items():
        assert bool(torch.isfinite(v).all()) and float(v.max()) < 1, (k, v)
    layer = CompositionalActivation(2, 3, domain=domain, dtype=dtype).to_relu()
    x = torch.linspace(lo, hi, 7, dtype=dtype).expand(2, 7).t()
    assert bool(torch.isfinite(layer(x)).all())


def test_every_kind_sees_the_same_input_on_an_offset_domain():
    # On (2^20, 2^20 + 1) with 65 float64 points, x is exact and u = x - 2^20 is exactly the
    # points of [0, 1]: if every kind sees u, the two runs are the same run, bit for bit
    # (before, default and raai got raw x: MSE 1e8 and more).
    n = 65
    u = torch.linspace(0, 1, n, dtype=torch.float64)
    y = torch.sin(6 * u)
    cfg = Config(seeds=2, epochs=(20, 20), points=n, dtype=torch.float64)
    unit = compare(y, 0, cfg, domain=(0.0, 1.0))
    offset = compare(y, 0, cfg, domain=(2.0**20, 2.0**20 + 1))
    for k in unit:
        assert torch.equal(unit[k], offset[k]), k


def test_kept_layers_of_a_sign0_run_are_networks_of_x():
    dom = (-2.0, 3.0)
    x, res = run({"t": (lambda x: torch.tanh(x), 0)}, seeds=2, epochs=(5, 5), points=40,
                 dtype=torch.float64, domain=dom, keep_layers=True)
    for k, r in res["t"].items():
        best = int(torch.argmin(r.final))
        y = BatchedMLP.from_layers(r.mlp_layers)(x)[best]
        assert torch.allclose(y, r.best_fit, rtol=0, atol=1e-12), k


@pytest.mark.parametrize("scale, dtype", [(3e18, torch.float32), (1e19, torch.float32),
                                          (1e160, torch.float64)])
def test_targets_too_large_for_the_dtype_are_refused(scale, dtype):
    # 3e18 in float32 gave NaN MSEs for the compositional kinds; 1e19 a confusing peaks error
    with pytest.raises(ValueError, match="`target 'target'` has values up to .* scale it down"):
        compare(lambda x: scale * torch.sin(x), 0, seeds=2, epochs=(3, 3), points=20,
                domain=(-3, 3), dtype=dtype)
    small = compare(lambda x: 1e18 * torch.sin(x), 0, seeds=2, epochs=(3, 3), points=20,
                    domain=(-3, 3), dtype=dtype)
    assert all(bool(torch.isfinite(v).all()) for v in small.values())


def test_any_float32_domain_trains():
    # u from float32 points could pass 1 by a few ulps, which stage 1 refused as outside [0, 1]
    for dom in [(0.6204344719931791, 0.6219171026817936), (-2.8390125061002336, -2.74219022809876),
                (93092.97727238343, 93728.9754660082)]:
        x, res = run({"t": (lambda x: torch.sin(x), 0)}, seeds=1, epochs=(2, 2), points=50,
                     domain=dom, kinds=("enforced",))
        assert bool(torch.isfinite(res["t"]["enforced"].final).all())
