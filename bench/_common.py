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


def file_label(device):
    """The device as it goes into a result file's name: the GPU's name, or the CPU's."""
    if device == "cuda":
        return torch.cuda.get_device_name().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core-{platform.machine()}"


def save_json(prefix, device, meta, rows, out=None, suffix=""):
    """Writes ``{"meta", "rows"}`` to <out or bench/results>/<prefix>-<device name>-<date><suffix>
    .json; returns the path."""
    out = out or RESULTS
    path = os.path.join(out, f"{prefix}-{file_label(device)}-"
                             f"{datetime.date.today().isoformat()}{suffix}.json")
    meta = {"device": device_label(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__, **meta}
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {path}")
    return path


def random_peaks(S, D, generator, device, dtype):
    """[S, D + 1] peaks drawn in float64 from (0.2, 0.8), then cast: the same nets in both
    dtypes."""
    return (torch.rand(S, D + 1, generator=generator, dtype=torch.float64) * 0.6 + 0.2).to(
        device, dtype)


def report_target(what, measured, target, better="lower"):
    """Prints an issue's target beside the measured figure; returns the record for the JSON."""
    met = measured <= target if better == "lower" else measured >= target
    print(f"target: {what}: {'met' if met else 'MISSED'} (measured {measured:.4g}, "
          f"target {'<=' if better == 'lower' else '>='} {target:g})")
    return {"what": what, "measured": measured, "target": target, "met": met}


def add_device_args(ap):
    """The options every benchmark of batched MLPs shares: --device, --dtype, --repeats."""
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", default=RESULTS, help="folder of the JSON results")


def devices(choice):
    """The devices to run on for --device: 'all' means the CPU and, when present, CUDA."""
    if choice != "all":
        return [choice]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
