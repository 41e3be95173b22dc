"""A cell's identity (cells.settings_hash) is derived from the whole Config: every setting that
can change a number changes it, so --resume never reuses a cell trained with other settings."""
import copy
import dataclasses

import pytest
import torch

from compnet_ext.experiments import cells, cli
from compnet_ext.experiments.config import Config

# A valid other value of each field (the default Config's value differs from it). A field that
# is neither here nor in cells.IDENTITY_EXCLUDED makes the test below fail until someone decides.
OTHER = {
    "seeds": 31, "points": 501, "width": 4, "epochs": (1000, 999), "lr_peaks": 2e-2,
    "lr_weights": {"default": 1e-3}, "warmup_fraction": {"raai": 0.3},
    "peak_bounds": (0.2, 0.8), "seed": 1, "peak_range": (0.2, 0.7), "dtype": torch.float64,
    "fused": False, "domain": (-1.0, 1.0),
}


def _other(cfg, name):
    if name == "device":  # another device type without needing one: bypass the checks
        changed = copy.copy(cfg)
        object.__setattr__(changed, "device", torch.device("meta"))
        return changed
    if name in OTHER:
        return cfg.replace(**{name: OTHER[name]})
    value = getattr(cfg, name)
    if isinstance(value, int) and not isinstance(value, bool):  # a new count: one more
        return cfg.replace(**{name: value + 1})
    pytest.fail(f"Config field {name!r} has no other value in OTHER and is not in "
                f"cells.IDENTITY_EXCLUDED: decide whether it changes a cell's numbers")


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
def test_every_setting_that_is_not_excluded_changes_the_identity(name):
    cfg = Config(device="cpu")
    if name in cells.IDENTITY_EXCLUDED:
        return
    changed = _other(cfg, name)
    assert getattr(changed, name) != getattr(cfg, name)
    assert cells.settings_hash("sweep", changed) != cells.settings_hash("sweep", cfg), name


def test_the_exclusions_are_fields_and_leave_the_identity_alone():
    names = {f.name for f in dataclasses.fields(Config)}
    assert set(cells.IDENTITY_EXCLUDED) <= names
    cfg = Config(device="cpu")
    other = cfg.replace(kinds=("enforced",), depth=3, seed_block=(0, 2), threads=1,
                        keep_curves=False, keep_layers=True, progress=True)
    assert cells.settings_hash("sweep", other) == cells.settings_hash("sweep", cfg)
    assert cells.settings_hash("sweep", cfg) != cells.settings_hash("reproduce", cfg)
    assert cells.settings_hash("sweep", cfg, pieces=True) != cells.settings_hash("sweep", cfg)


SWEEP = ["sweep", "--depths", "2,3", "--seeds", "4", "--epochs", "3,3", "--points", "16",
         "--block-seeds", "2", "--targets", "x3", "--kinds", "default,enforced",
         "--keep-cells", "--no-progress", "--no-plots"]
REPRODUCE = ["reproduce", "--seeds", "4", "--epochs", "3,3", "--points", "16",
             "--block-seeds", "2", "--targets", "x3", "--kinds", "raai,enforced",
             "--keep-cells", "--no-progress", "--no-plots"]


@pytest.mark.parametrize("argv, option", [
    (SWEEP, ["--peak-bounds", "0.3,0.7"]), (SWEEP, ["--warmup-fraction", "0.5"]),
    (REPRODUCE, ["--peak-bounds", "0.3,0.7"]), (REPRODUCE, ["--warmup-fraction", "0.5"]),
])
def test_resume_retrains_cells_of_other_settings(tmp_path, capsys, argv, option):
    out = str(tmp_path / "so")
    assert cli.main([*argv, *option, "--out", out]) == 0
    capsys.readouterr()
    assert cli.main([*argv, "--resume", "--out", out]) == 0
    err = capsys.readouterr().err
    assert "reusing" not in err
    assert "made with other settings; recomputing it" in err
    # and a resume with the same settings reuses every cell
    assert cli.main([*argv, "--resume", "--out", out]) == 0
    assert "reusing" in capsys.readouterr().err
