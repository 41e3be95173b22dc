"""Sweeps and reproductions split into work cells: under torchrun (2 CPU ranks, gloo; on a GPU
host also one rank per GPU, nccl) the files equal one process's, bit for bit; a killed or failed run resumes to the same files; corrupted cell
files are recomputed; a failing rank ends the run in bounded time; ranks with different options
are refused (docs/training.md, "Scaling out" and "Resuming")."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import compnet_ext
from compnet_ext import train
from compnet_ext.experiments import cells, cli
from compnet_ext.experiments.distributed import NoDevice, World
from compnet_ext.targets import select
from conftest import cuda

# --device cpu: the default (auto) is CUDA on a GPU host, where rank 1 of 2 has no GPU of its own
# on a one-GPU node (refused); the CUDA path has its own test below.
SWEEP = ["sweep", "--depths", "2:4", "--seeds", "5", "--epochs", "20,20", "--points", "32",
         "--kinds", "default,enforced", "--targets", "x3,sin", "--no-progress", "--no-plots",
         "--device", "cpu"]
# 3 depths x 3 blocks (1, 2, 2 seeds) x 2 kinds x 2 targets = 36 cells
SPLIT = ["--block-seeds", "2"]
N_CELLS = 36
REPRODUCE = ["reproduce", "--quick", "--points", "32", "--targets", "x3", "--no-progress",
             "--device", "cpu"]
TIMEOUT = 240  # a subprocess's bound (seconds): far above its time on a loaded 2-core machine


def _env(**extra):
    # The package's own folder on the path, so the subprocesses import this copy (installed or not).
    pkg_parent = os.path.dirname(os.path.dirname(compnet_ext.__file__))
    path = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPNET_TEST_")}
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(tmp_path, argv, nproc=2, **env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "compnet_ext", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), cwd=tmp_path,
                          timeout=TIMEOUT)


def _on(device, argv):
    return [device if a == "cpu" else a for a in argv]


def _files(out):
    """Every output file's bytes; results.json parsed, less its wall time."""
    got = {}
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if os.path.isdir(path):
            continue
        data = open(path, "rb").read()
        if name == "results.json":
            data = json.loads(data)
            assert data.pop("wall_seconds") > 0
        got[name] = data
    return got


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory):
    """One process, one seed block per cell: the files every split run must equal."""
    out = tmp_path_factory.mktemp("ref") / "sweep"
    assert cli.main([*SWEEP, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["results.json", "sweep.csv"]  # cells/ deleted when done
    return _files(out)


def test_torchrun_sweep_equals_one_process(tmp_path, sweep_reference):
    r = _torchrun(tmp_path, [*SWEEP, *SPLIT, "--out", "out"])
    assert r.returncode == 0, r.stderr
    assert _files(tmp_path / "out") == sweep_reference
    logs = tmp_path / "out" / "logs"
    assert sorted(os.listdir(logs)) == ["rank-0.log", "rank-1.log"]  # status files cleared
    for rank in (0, 1):  # each rank trained a share (near-equal cost) and logged it
        text = (logs / f"rank-{rank}.log").read_text()
        assert " of 36 cells to train" in text and "trained " in text
    assert "| 4 | sin | enforced |" in r.stdout  # the table, printed once (by rank 0)
    assert r.stdout.count("| 4 | sin | enforced |") == 1


def test_torchrun_reproduce_quick_equals_one_process(tmp_path):
    pytest.importorskip("matplotlib")
    assert cli.main([*REPRODUCE, "--out", str(tmp_path / "one")]) == 0
    r = _torchrun(tmp_path, [*REPRODUCE, "--block-seeds", "4", "--out", "two"])
    assert r.returncode == 0, r.stderr
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(one) == ["best_fits.png", "loss_curves.png", "results.csv", "results.json"]
    assert one == two  # the PNGs too: drawn from bitwise the same results


@cuda
def test_torchrun_on_gpus_equals_one_process(tmp_path):
    # One rank per GPU (nccl), at most 2; on a one-GPU host a single rank still takes the
    # launched path (process group, cuda:LOCAL_RANK). The same --block-seeds in both runs: the
    # CUDA kernels' summation order depends on a launch's seed count (docs/gpu.md).
    argv = _on("cuda", [*SWEEP, *SPLIT])
    assert cli.main([*argv, "--out", str(tmp_path / "one")]) == 0
    nproc = min(2, torch.cuda.device_count())
    r = _torchrun(tmp_path, [*argv, "--out", "two"], nproc=nproc)
    assert r.returncode == 0, r.stderr
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    assert sorted(os.listdir(tmp_path / "two" / "logs")) == [f"rank-{r}.log" for r in range(nproc)]


@cuda
def test_more_ranks_than_gpus_is_refused(tmp_path):
    nproc = torch.cuda.device_count() + 1
    r = _torchrun(tmp_path, [*_on("cuda", SWEEP), "--out", "out"], nproc=nproc,
                  COMPNET_DIST_TIMEOUT="60")
    assert r.returncode != 0
    # a usage error (exit 2, one line) from the rank without a GPU, naming the way out
    assert f"error: LOCAL_RANK {nproc - 1} has no GPU" in r.stderr and "--device cpu" in r.stderr
    assert not (tmp_path / "out" / "cells").exists()  # nothing trained


def test_a_rank_gets_its_own_gpu_or_a_clear_refusal(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cuda_dev, cpu = torch.device("cuda"), torch.device("cpu")
    assert World(0, 2, 0, True).device(cuda_dev) == torch.device("cuda", 0)
    with pytest.raises(NoDevice, match=r"LOCAL_RANK 1 has no GPU: this node has 1; .*--device cpu"):
        World(1, 2, 1, True).device(cuda_dev)
    assert World(1, 2, 1, True).device(cpu) == cpu  # the CPU: any number of ranks
    assert World().device(cuda_dev) == cuda_dev  # not under torchrun: as asked

    def refused(*args, **kwargs):  # what Session raises on such a rank (it asks World.device)
        World(1, 2, 1, True).device(cuda_dev)
    monkeypatch.setattr(cli, "Session", refused)
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)  # rank 1, where other usage errors are left to rank 0
    with pytest.raises(SystemExit) as e:  # a usage error, said by that rank
        cli.main([*SWEEP, "--out", str(tmp_path / "never")])
    assert e.value.code == 2 and "LOCAL_RANK 1 has no GPU" in capsys.readouterr().err.splitlines()[-1]


def test_a_failing_rank_stops_the_run_and_resume_finishes_it(tmp_path, sweep_reference, capsys):
    t0 = time.monotonic()
    r = _torchrun(tmp_path, [*SWEEP, *SPLIT, "--out", "out"],
                  COMPNET_TEST_FAULT="1:1:raise")  # rank 1 raises after its first cell group
    took = time.monotonic() - t0
    assert r.returncode != 0
    assert "COMPNET_TEST_FAULT: rank 1 fails on purpose after 1 cell group(s)" in r.stderr
    assert took < 120, f"the failed run took {took:.0f} s to end"
    out = tmp_path / "out"
    assert not (out / "results.json").exists()
    log = (out / "logs" / "rank-1.log").read_text()
    assert "failed:" in log and "Traceback" in log
    kept = len(os.listdir(out / "cells"))
    assert 0 < kept < N_CELLS
    # The re-run (one process here) trains only the missing cells, and ends where an
    # uninterrupted run ends.
    assert cli.main([*SWEEP, *SPLIT, "--resume", "--out", str(out)]) == 0
    assert f"reusing {kept} of {N_CELLS} finished cells" in capsys.readouterr().err
    assert _files(out) == sweep_reference


def test_a_killed_run_resumes_and_corrupted_cells_are_recomputed(tmp_path, sweep_reference,
                                                                  capsys):
    out = tmp_path / "out"
    argv = [*SWEEP, *SPLIT, "--out", str(out)]
    r = subprocess.run([sys.executable, "-m", "compnet_ext", *argv], capture_output=True,
                       text=True, env=_env(COMPNET_TEST_FAULT="0:4:kill"), cwd=tmp_path,
                       timeout=TIMEOUT)
    assert r.returncode == -signal.SIGKILL, r.stderr
    names = sorted(os.listdir(out / "cells"))
    assert len(names) == 4 * 2  # 4 groups of 2 targets written, then killed
    # One cell file cut short (as if the machine died mid-write without the atomic rename),
    # one with a flipped byte, one from other settings: each is found out and recomputed.
    cut, flipped, foreign = (out / "cells" / n for n in names[:3])
    cut.write_bytes(cut.read_bytes()[:-10])
    data = bytearray(flipped.read_bytes())
    data[-5] ^= 1
    flipped.write_bytes(bytes(data))
    head, rest = foreign.read_bytes().split(b"\n", 1)
    header = json.loads(head)
    header["settings"] = "0" * 32
    foreign.write_bytes(json.dumps(header).encode() + b"\n" + rest)
    (out / "cells" / ".stray.cell.123.tmp").write_bytes(b"half")  # a killed writer's temporary
    assert cli.main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "the file is corrupted (length or checksum); recomputing it" in err
    assert "the file is made with other settings; recomputing it" in err
    assert f"reusing 5 of {N_CELLS} finished cells" in err
    assert _files(out) == sweep_reference
    assert not (out / "cells").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_with_different_options_are_refused(tmp_path):
    # Started by hand as torchrun would (its environment contract), each rank with its own
    # command line: rank 1 asks for other seeds.
    port = str(_free_port())
    procs = []
    for rank, seeds in ((0, "5"), (1, "6")):
        env = _env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, COMPNET_DIST_TIMEOUT="60")
        argv = [a if a != "5" else seeds for a in SWEEP]
        procs.append(subprocess.Popen([sys.executable, "-m", "compnet_ext", *argv, "--out", "out"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env, cwd=tmp_path))
    results = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert [p.returncode for p in procs] == [2, 2]
    err0 = results[0][1].strip().splitlines()[-1]
    assert "started with different options" in err0 and "rank(s) 1" in err0
    assert "--seeds" in err0 and "--out" not in err0
    assert results[1][1].strip() == ""  # said once, by rank 0
    assert not os.path.exists(tmp_path / "out" / "cells")  # nothing trained


# ---------------------------------------------------------------------------------------------
# in one process: the cells, and why splitting cannot change a seed's numbers


def test_a_seed_is_the_same_in_any_batch_float32():
    # The fused kernels give each seed its own arithmetic: the same seed trained in a batch of
    # other seeds, targets or kinds gives torch.equal results (the CLI's dtype, fused engine).
    cfg = train.Config(seeds=6, points=48, epochs=(6, 5), device="cpu", keep_layers=True)
    _, whole = train.run(select(["x3", "sin", "tanh3"]), cfg)
    for block, targets, kinds in (((0, 1), ["sin"], ("enforced",)),
                                  ((2, 5), ["tanh3", "sin"], ("default", "not_enforced")),
                                  ((5, 6), ["sin"], ("raai", "no_pretraining", "enforced"))):
        _, part = train.run(select(targets), cfg, kinds=kinds, seed_block=block)
        rows = slice(*block)
        for t in targets:
            for k in kinds:
                a, b = whole[t][k], part[t][k]
                assert torch.equal(a.final[rows], b.final) and torch.equal(a.curve[:, rows], b.curve)
                for (W, bias), (W2, bias2) in zip(a.mlp_layers, b.mlp_layers):
                    assert torch.equal(W[rows], W2) and torch.equal(bias[rows], bias2)


def test_cells_do_not_depend_on_the_ranks_and_shares_balance():
    assert cells.blocks(5, 2) == [(0, 1), (1, 3), (3, 5)]
    assert cells.blocks(30, 4096) == [(0, 30)]
    plan = cells.plan(["x3", "sin"], ("default", "enforced"), [2, 8, 32], 100, 10)
    assert len(plan) == 3 * 10 * 2 * 2 and len(set(plan)) == len(plan)
    assert [(c.depth, c.start) for c in plan] == sorted((c.depth, c.start) for c in plan)
    epochs = (10, 10)
    for k in (1, 2, 3, 7, 200):
        shares = cells.share(plan, k, epochs)
        assert len(shares) == k and [c for s in shares for c in s] == plan  # contiguous, all
        if k <= 7:
            costs = [sum(cells.cost(c, epochs) for c in s) for s in shares]
            biggest = max(cells.cost(c, epochs) for c in plan)
            assert max(costs) - min(costs) <= biggest  # off by at most one cell
    groups = cells.groups(cells.share(plan, 3, epochs)[1])
    assert all(len({(c.depth, c.block, c.kind) for c in g[3]}) == 1 for g in groups)


def test_cell_files_round_trip_and_refuse_other_keys(tmp_path):
    cell = cells.Cell(3, 0, 2, "enforced", "x3")
    payload = {"final": torch.tensor([1.5, 2.5]), "pieces": None, "limit": "too many"}
    cells.write_cell(str(tmp_path), cell, "abc", payload)
    got, why = cells.read_cell(str(tmp_path), cell, "abc")
    assert why is None and torch.equal(got["final"], payload["final"]) and got["limit"] == "too many"
    other = cells.Cell(3, 0, 2, "enforced", "sin")
    os.rename(cells.cell_path(str(tmp_path), cell), cells.cell_path(str(tmp_path), other))
    assert cells.read_cell(str(tmp_path), other, "abc") == (None, "not a cell file (bad header)")
    assert cells.read_cell(str(tmp_path), cell, "abc") == (None, "missing")


def test_block_seeds_is_checked_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*SWEEP, "--block-seeds", "0", "--out", str(tmp_path / "never")])
    assert e.value.code == 2 and "--block-seeds" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "never").exists()
