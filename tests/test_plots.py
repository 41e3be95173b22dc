"""Pictures and the CLI (matplotlib, Agg backend)."""
import builtins

import pytest
import torch

import compnet_ext
from compnet_ext.experiments import cli, plots
from compnet_ext.nn import BatchedMLP

pytest.importorskip("matplotlib")


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("kind", ["compositional", "default"])
def test_cli_plot_neurons_writes_png(tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    assert cli.main(["plot", "neurons", "--depth", "3", "--kind", kind, "--out", str(out)]) == 0
    _png_ok(out)


def test_cli_plot_fit_and_pre_relu(tmp_path):
    out = tmp_path / "fit.png"
    assert cli.main(["plot", "fit", "--depth", "4", "--peaks", "half", "--target", "x2",
                     "--out", str(out)]) == 0
    _png_ok(out)
    out = tmp_path / "pre.png"
    assert cli.main(["plot", "neurons", "--pre-relu", "--out", str(out)]) == 0
    _png_ok(out)


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["plot", "neurons", "--kind", "nope", "--out", str(tmp_path / "a.png")])
    with pytest.raises(SystemExit):
        cli.main(["plot", "neurons", "--depth", "0", "--out", str(tmp_path / "a.png")])


def test_plot_functions_return_figures_with_one_panel_per_layer():
    m = BatchedMLP.from_layers(compnet_ext.encode(torch.full((2, 4), 0.5, dtype=torch.float64)))
    fig = plots.plot_neurons(m, seed=1)
    assert len([ax for ax in fig.axes if ax.lines]) == 3
    assert len(fig.axes[0].lines) == 4
    fig = plots.plot_fit(m, lambda x: x**2)
    assert "3.91e-03" in fig.axes[0].get_title()  # D = 3: max error 4^-4
    with pytest.raises(ValueError, match="`seed`"):
        plots.plot_neurons(m, seed=2)
    with pytest.raises(TypeError, match="`target`"):
        plots.plot_fit(m, target=3)


def test_neuron_outputs_match_forward():
    m = BatchedMLP(1, (1, 3, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    (h,) = plots.neuron_outputs(m, x)
    W, b = m.layers()[1]
    torch.testing.assert_close(h @ W[0].T[:, 0] + b[0], m(x, fused=False)[0].detach())


def test_missing_matplotlib_message(monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots._plt()
