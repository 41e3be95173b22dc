"""Work cells of a split experiment, how they are shared out, and their result files.

A *cell* is one target x kind x depth x seed block (:class:`Cell`): the unit a rank trains, a
file in ``OUT/cells/``, and what ``--resume`` reuses. Cells are made from the options alone
(:func:`plan`), never from the number of processes, so every run of the same options has the same
cells, and every seed's numbers depend only on its global index (a block trains rows of the whole
draw, :attr:`~compnet_ext.experiments.config.Config.seed_block`): the gathered results are the
same, bit for bit, whatever the number of ranks.

Sizing: a block has at most ``block_seeds`` seeds (:data:`BLOCK_SEEDS` by default). That is large
enough to fill a fused launch on a GPU, small enough that a crash loses little and that a big
experiment has many more cells than ranks; cells of the same depth, kind and block are trained
together in one batched launch series (:func:`groups`).

Files: each cell's result is one file, written atomically, holding a JSON header line (the cell's
key, the hash of the settings that decide its numbers, the payload's length and SHA-256) and the
payload (``torch.save`` of a dict of tensors). :func:`read_cell` accepts a file only when all of
these match, so a partial, corrupted or stale file is recomputed, never used.
"""
import dataclasses
import hashlib
import io
import json
import os
from dataclasses import dataclass

import torch

import compnet_ext
from .outdir import atomic_write, write_target

BLOCK_SEEDS = 4096
"""Default most seeds in one cell (``--block-seeds``)."""
FORMAT = "compnet-cell 1"
SUFFIX = ".cell"


@dataclass(frozen=True)
class Cell:
    """One work unit: ``depth``, seed block ``start .. stop - 1``, ``kind``, ``target``."""
    depth: int
    start: int
    stop: int
    kind: str
    target: str

    @property
    def key(self):
        """The cell's name, also its file's: ``d005-s0000000-0000030-enforced-x3``."""
        return f"d{self.depth:03d}-s{self.start:07d}-{self.stop:07d}-{self.kind}-{self.target}"

    @property
    def block(self):
        return (self.start, self.stop)


def blocks(seeds, block_seeds=BLOCK_SEEDS):
    """``[(start, stop), ...]`` covering ``range(seeds)`` in near-equal blocks of at most
    ``block_seeds``."""
    n = -(-seeds // block_seeds)
    edges = [seeds * i // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def plan(targets, kinds, depths, seeds, block_seeds=BLOCK_SEEDS):
    """Every cell of an experiment, in (depth, block, kind, target) order."""
    return [Cell(d, a, b, k, t) for d in depths for a, b in blocks(seeds, block_seeds)
            for k in kinds for t in targets]


def cost(cell, epochs):
    """Rough relative training cost of a cell: seeds x layers x steps (every kind takes about
    epochs[0] + epochs[1] steps of work proportional to the depth)."""
    return (cell.stop - cell.start) * (cell.depth + 1) * max(1, sum(epochs))


def share(cells, world_size, epochs):
    """Contiguous runs of ``cells`` (in plan order), one per rank, of near-equal :func:`cost`.

    Contiguous shares keep each rank's cells batchable (same depth and block side by side);
    the cut points are where the running cost crosses each rank's equal part.
    """
    costs = [cost(c, epochs) for c in cells]
    total, out, start, run = sum(costs), [], 0, 0
    for r in range(world_size):
        goal = total * (r + 1) / world_size
        stop = start
        while stop < len(cells) and (r == world_size - 1 or run + costs[stop] / 2 <= goal):
            run += costs[stop]
            stop += 1
        out.append(cells[start:stop])
        start = stop
    return out


def groups(cells):
    """Consecutive cells of the same depth, block and kind: ``[(depth, (start, stop), kind,
    [cells])]``, each trained as one batched run (all its targets in one launch series)."""
    out = []
    for c in cells:
        if out and out[-1][:3] == (c.depth, c.block, c.kind):
            out[-1][3].append(c)
        else:
            out.append((c.depth, c.block, c.kind, [c]))
    return out


IDENTITY_EXCLUDED = {
    "kinds": "each cell trains its own kind alone (in its key); the draw does not depend on the "
             "kinds selected",
    "depth": "in the cell's key",
    "seed_block": "in the cell's key",
    "threads": "CPU threads do not change a number (the ops reduce in a fixed order)",
    "keep_curves": "fixed by the command (the cell's payload), which is part of the identity",
    "keep_layers": "fixed by the command and its extra settings (e.g. sweep's pieces)",
    "progress": "display only",
}
"""The :class:`~compnet_ext.experiments.config.Config` fields that are NOT part of a cell's
identity (:func:`settings_hash`), each with why it cannot change the cell's numbers. Every other
field is, so a new setting is part of the identity unless it is added here."""


def _identity_value(name, value):
    """A field's value in the hash's JSON: tuples as lists, dicts sorted, the dtype by name, the
    device by type (its index does not change a number); TypeError for anything else, so a new
    kind of setting cannot be hashed by an accident of its repr."""
    if isinstance(value, torch.device):
        return value.type
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, dict):
        return sorted((str(k), _identity_value(name, v)) for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return [_identity_value(name, v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"setting {name!r}: no identity for a {type(value).__name__}; teach "
                    f"cells._identity_value its form")


def settings_hash(command, cfg, **extra):
    """Hash of everything that decides a cell's numbers besides its key: ``command``, every
    field of ``cfg`` but :data:`IDENTITY_EXCLUDED`, ``extra``, and the torch and compnet_ext
    versions (not the number of ranks, the device index or the CPU threads, which do not
    change them)."""
    rec = {f.name: _identity_value(f.name, getattr(cfg, f.name))
           for f in dataclasses.fields(cfg) if f.name not in IDENTITY_EXCLUDED}
    rec.update(command=command, torch=torch.__version__, compnet_ext=compnet_ext.__version__,
               extra={k: _identity_value(k, v) for k, v in extra.items()})
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:32]


def cell_path(folder, cell):
    return os.path.join(folder, cell.key + SUFFIX)


def write_cell(folder, cell, settings, payload):
    """Write ``payload`` (a dict of tensors, numbers, strings, None) as ``cell``'s file,
    atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    header = {"format": FORMAT, "key": cell.key, "settings": settings, "bytes": len(data),
              "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write(cell_path(folder, cell),
                 lambda f: f.write(json.dumps(header).encode() + b"\n" + data), binary=True)


def read_cell(folder, cell, settings):
    """``(payload, None)`` from ``cell``'s file, or ``(None, why)`` when it is missing,
    partial, corrupted or from other settings; NotAFileError when it is a FIFO, a device, ...
    (neither read nor deleted)."""
    try:
        write_target(cell_path(folder, cell))  # NotAFileError: a FIFO would block the read
        with open(cell_path(folder, cell), "rb") as f:
            head, data = f.readline(), f.read()
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"unreadable ({e})"
    try:
        header = json.loads(head)
        ok = header["format"] == FORMAT and header["key"] == cell.key
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        return None, "not a cell file (bad header)"
    if header["settings"] != settings:
        return None, "made with other settings"
    if len(data) != header["bytes"] or hashlib.sha256(data).hexdigest() != header["sha256"]:
        return None, "corrupted (length or checksum)"
    return torch.load(io.BytesIO(data), weights_only=True), None
