"""The package's structure (imports run one way, down; one home per rule), the experiment stages
and work units, and the deprecated names that keep working for one release."""
import ast
import importlib
import inspect
import os
import subprocess
import sys

import pytest
import torch

import compnet_ext
from compnet_ext import nn as cnn
from compnet_ext import ops, train
from compnet_ext.experiments import cli, stages
from compnet_ext.experiments.config import Config
from compnet_ext.targets import PAPER_TARGETS, TARGETS, select

PKG = os.path.dirname(compnet_ext.__file__)
F64 = torch.float64


def _modules():
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                yield name.removesuffix(".__init__"), path


def _imports(name, path):
    """(imported module, imported names, inside a function?) of every compnet_ext import."""
    tree = ast.parse(open(path).read())
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}

    def deferred(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return True
        return False

    package = name.split(".") if path.endswith("__init__.py") else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.split(".")[0] == "compnet_ext":
                yield module, [a.name for a in node.names], deferred(node)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "compnet_ext":
                    yield a.name, [], deferred(node)


def test_imports_run_one_way_down():
    modules = dict(_modules())
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        for module, names, deferred in _imports(name, path):
            assert not deferred, f"{name} imports {module} inside a function"
            targets = [f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names]
            for target, n in zip(targets or [module], names or [""]):
                if n == "_C":  # the compiled extension, below everything
                    continue
                assert not (n.startswith("_") and target == module), \
                    f"{name} imports the private name {module}.{n}"
                if target in modules and target != name:
                    graph[name].add(target)
    state = {}

    def visit(v, path):
        state[v] = "open"
        for w in graph[v]:
            assert state.get(w) != "open", f"import cycle: {' -> '.join(path + [w])}"
            if w not in state:
                visit(w, path + [w])
        state[v] = "done"

    for v in graph:
        if v not in state:
            visit(v, [v])


def test_nn_is_the_namespace_for_modules_and_reads_the_kernels_limits():
    assert cnn.BatchedMLP is compnet_ext.batched_mlp.BatchedMLP
    assert cnn.train_mlp is compnet_ext.batched_mlp.train_mlp
    assert (cnn.MAX_WIDTH, cnn.MAX_HIDDEN) == (compnet_ext._C.mlp_max_width,
                                               compnet_ext._C.mlp_max_hidden)
    assert not any(v is torch.nn for v in vars(cnn).values())


def test_one_stage1_clamp():
    for f in (compnet_ext.train_peaks, stages.train_peaks):
        assert inspect.signature(f).parameters["peak_bounds"].default == ops.PEAK_BOUNDS
    with pytest.warns(DeprecationWarning, match="PEAK_BOUNDS"):
        assert train.PEAK_EPS == ops.PEAK_BOUNDS[0]


def test_one_target_registry():
    assert set(PAPER_TARGETS) <= set(TARGETS)
    args = cli.build_parser().parse_args(["plot", "fit", "--target", "x2", "--out", "f.png"])
    assert args.target == "x2"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["reproduce", "--targets", "x2"])  # not in the paper


def test_plot_target_tanh_is_a_deprecated_alias(capsys):
    args = cli.build_parser().parse_args(["plot", "fit", "--target", "tanh", "--out", "f.png"])
    assert args.target == "tanh3" and "deprecated" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# stages: one function each, fused or step by step, bitwise the same, the library's layout


@pytest.mark.parametrize("free", [False, True])
def test_stage1_fused_equals_step_by_step(free):
    g = torch.Generator().manual_seed(7)
    x = torch.linspace(0, 1, 90, dtype=F64)
    peaks = 0.25 + 0.5 * torch.rand(3, 5, generator=g, dtype=F64)
    scales = compnet_ext.smooth_scales(peaks) if free else None
    kw = dict(epochs=10, lr=0.02, record_every=3)
    fused = stages.train_peaks(x, x**3, peaks, scales, **kw)
    steps = stages.train_peaks(x, x**3, peaks, scales, fused=False, **kw)
    assert fused[3].shape == (3, 4)
    for a, b in zip(fused, steps):
        assert (a is None and b is None) or torch.equal(a, b)


def test_stage2_fused_equals_step_by_step():
    x = torch.linspace(0, 1, 70, dtype=F64)
    m = cnn.BatchedMLP(3, (1, 4, 4, 1), generator=torch.Generator().manual_seed(8), dtype=F64)
    a, b = cnn.BatchedMLP.from_layers(m.layers()), cnn.BatchedMLP.from_layers(m.layers())
    fused = stages.train_mlp(a, x, x**3, epochs=10, lr=0.01, record_every=4)
    steps = stages.train_mlp(b, x, x**3, epochs=10, lr=0.01, record_every=4, fused=False)
    assert fused[1].shape == (3, 3)
    for u, v in zip((*fused, *a.parameters()), (*steps, *b.parameters())):
        assert torch.equal(u, v)
    with pytest.raises(ValueError, match="fused=False"):
        stages.train_mlp(a, x, x**3, epochs=1, lr=torch.full((3,), 0.01))


def test_deprecated_stage_names_warn_and_give_the_old_layout():
    x = torch.linspace(0, 1, 50, dtype=F64)
    peaks = torch.full((2, 4), 0.4, dtype=F64)
    with pytest.warns(DeprecationWarning, match="stages.train_peaks"):
        p, s, losses = train.train_peaks(x, x**3, peaks, None, -1, 6)
    p2, _, _, curve = stages.train_peaks(x, x**3, peaks, epochs=6, record_every=1)
    assert torch.equal(p, p2) and s is None and torch.equal(losses, curve.t())
    m = cnn.BatchedMLP(2, (1, 3, 1), generator=torch.Generator().manual_seed(9), dtype=F64)
    m2 = cnn.BatchedMLP.from_layers(m.layers())
    with pytest.warns(DeprecationWarning, match="stages.train_mlp"):
        losses = train.train_weights(m, x, x**3, 5, 1e-2)
    _, curve = stages.train_mlp(m2, x, x**3, epochs=5, lr=1e-2, record_every=1, fused=False)
    assert torch.equal(losses, curve.t())


@pytest.mark.parametrize("old, new", [("compnet_ext.plots", "compnet_ext.experiments.plots"),
                                      ("compnet_ext.cli", "compnet_ext.experiments.cli")])
def test_moved_modules_warn_and_still_work(old, new, tmp_path):
    # the installed package, from outside the source tree (CI installs non-editable)
    code = f"import warnings; warnings.simplefilter('error'); import {old}"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert "DeprecationWarning" in r.stderr and new in r.stderr
    with pytest.warns(DeprecationWarning):
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    moved = importlib.import_module(new)
    name = "plot_fit" if old.endswith("plots") else "main"
    assert getattr(module, name) is getattr(moved, name)


# ---------------------------------------------------------------------------------------------
# the engine's settings and work units


def test_config_checks_every_setting_before_any_work():
    with pytest.raises(ValueError, match="`depth` must be an int in"):
        Config(depth=cnn.MAX_HIDDEN + 1)
    with pytest.raises(ValueError, match="`seed_block`"):
        Config(seeds=4, seed_block=(3, 5))
    with pytest.raises(ValueError, match="`peak_range`"):
        Config(peak_range=(0.5, 0.4))
    cfg = Config(kinds=("enforced", "default"), epochs=[3, 2], lr_weights=1e-3, device="auto")
    assert cfg.kinds == ("default", "enforced") and cfg.epochs == (3, 2)
    assert cfg.lr_weights == {k: 1e-3 for k in train.KINDS} and cfg.device.type in ("cpu", "cuda")
    assert cfg.replace(depth=3).depth == 3 and list(cfg.replace(seed_block=(1, 3)).rows) == [1, 2]


def test_a_seed_block_is_rows_of_the_whole_run():
    # Work units (targets x kinds x depth x seed block) are what a sharded run trains: the fused
    # kernels give each seed its own launch-independent arithmetic, so the rows are bitwise.
    cfg = Config(seeds=5, points=40, epochs=(4, 3), dtype=F64, device="cpu", keep_layers=True)
    _, whole = train.run(select(["x3", "sin"]), cfg)
    _, part = train.run(select(["sin"]), cfg, kinds=("raai", "enforced"), seed_block=(2, 4))
    for k in ("raai", "enforced"):
        a, b = whole["sin"][k], part["sin"][k]
        assert torch.equal(a.final[2:4], b.final) and torch.equal(a.curve[:, 2:4], b.curve)
        for (W, bias), (W2, bias2) in zip(a.mlp_layers, b.mlp_layers):
            assert torch.equal(W[2:4], W2) and torch.equal(bias[2:4], bias2)
    assert torch.equal(whole["sin"]["enforced"].peaks[2:4], part["sin"]["enforced"].peaks)
