"""Profile one capture mode on a benchmark preset: where the extra device and host time goes.

Companion to capture_overhead.py (which measures the ratios): this prints, for the same models,
the device kernels by time per step (torch.profiler) and the host functions of parity by cumulative
time per step (cProfile), with and without capture, so a regression can be traced to a kernel or a
function.

    python benchmarks/capture_profile.py --device cuda --preset gpu --dtype bf16 --mode full
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_overhead import _build, _make_step  # noqa: E402  (one model builder for both benchmarks)

from parity.capture.config import CaptureConfig  # noqa: E402
from parity.capture.runtime import start_capture  # noqa: E402


def _profile_block(step, steps: int, device: torch.device, label: str) -> None:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n### {label}: top operators by {sort} over {steps} steps\n")
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--preset", default=None, help="cpu, gpu or gpu-1b (default: cpu on cpu, gpu on cuda)")
    ap.add_argument("--mode", default="full", help="capture level to profile (full, every:N, minimal)")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--seq", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    args.preset = args.preset or ("gpu" if args.device == "cuda" else "cpu")
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model, x, y, desc = _build(args, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    step = _make_step(model, x, y, sync, opt)
    print(f"## {args.preset}: {desc}, {args.dtype}, mode {args.mode}")
    for _ in range(5):
        step()
    _profile_block(step, args.steps, device, "no capture")
    with tempfile.TemporaryDirectory(prefix="parity-profile-") as tmp:
        capture = start_capture(Path(tmp) / "run", CaptureConfig.parse(args.mode))
        try:
            for _ in range(3):
                step()
            _profile_block(step, args.steps, device, f"capture {args.mode}")
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.steps):
                step()
            profiler.disable()
        finally:
            capture.stop()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"parity", 40)
    print(f"\n### capture {args.mode}: host functions of parity, cumulative over {args.steps} steps\n")
    print(out.getvalue())


if __name__ == "__main__":
    main()
