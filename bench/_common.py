"""Shared by the benchmark scripts: where results go and what they record about the machine."""
import datetime
import json
import os
import platform

import torch

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def device_label(device):
    """A readable name of the device a benchmark ran on."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine()


def save_json(prefix, device, meta, rows):
    """Writes ``{"meta", "rows"}`` to bench/results/<prefix>-<cpu|cuda>-<date>.json; returns the path."""
    path = os.path.join(RESULTS, f"{prefix}-{'cuda' if device == 'cuda' else 'cpu'}-"
                                 f"{datetime.date.today().isoformat()}.json")
    meta = {"device": device_label(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, **meta}
    os.makedirs(RESULTS, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {path}")
    return path


def add_device_args(ap):
    """The options every benchmark of batched MLPs shares: --device, --dtype, --repeats."""
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=None)


def devices(choice):
    """The devices to run on for --device: 'all' means the CPU and, when present, CUDA."""
    if choice != "all":
        return [choice]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
