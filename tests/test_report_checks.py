"""The qualitative checks of a reproduction survive any mean MSE: 0, inf, NaN (issue 18)."""
import json
import math

import pytest

from compnet_ext.experiments import cli, report


def _results(enforced, default):
    return {"t": {"default": {"mean": default}, "enforced": {"mean": enforced}}}


@pytest.mark.parametrize("enforced, default, shown, holds", [
    (0.0, 0.0, "n/a (both 0)", False),
    (0.0, 1e-3, "inf", True),
    (1e-3, 0.0, "0", False),
    (math.nan, 1.0, "n/a (a mean MSE is not finite)", False),
    (1.0, math.inf, "n/a (a mean MSE is not finite)", False),
    (1e-5, 1e-2, "1000", True),
    (1e-2, 3e-3, "0.3", False),
])
def test_every_ratio_gives_a_check(enforced, default, shown, holds):
    checks = dict(report.qualitative_checks(_results(enforced, default)))
    claim = f"t: 'default' mean / 'enforced' mean = {shown} >= 100"
    assert checks[claim] is holds
    assert "t: 'enforced' has the lowest mean MSE" in checks


@pytest.mark.parametrize("argv", [["--epochs", "0,0", "--points", "2"],
                                  ["--epochs", "5,5", "--points", "3"]])
def test_nonconvex_reproduction_with_exact_fits_finishes(tmp_path, capsys, argv):
    out = tmp_path / "o"
    assert cli.main(["reproduce", "--nonconvex", "cubic", "--seeds", "1", *argv,
                     "--no-progress", "--no-plots", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert any("mean / 'enforced' mean" in c["claim"] for c in doc["checks"])
