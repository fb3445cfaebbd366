"""Benchmark: how long `parity compare` takes on two 100,000-step traces with a divergence at step 90,000.

Synthesises two run directories with TraceWriter (step records shaped like the recorder's: events,
one loss, one AdamW param group, grad_norm, clip, batch/params/optim_state/rng digests, wall_ms,
peak_mem_bytes), identical except from the planted step on, where a real divergence would show: the
loss moves by one ulp at that step, and gradient norm, parameters and optimizer state differ from it
on. Then times, with repetitions, `parity compare A B --format json` as a subprocess, and in process
`load_trace` (each side) and `compare_traces`.

    python benchmarks/compare_speed.py                      # 100k steps, divergence at 90k, 3 repetitions
    python benchmarks/compare_speed.py --profile            # also cProfile one in-process `parity compare`
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from parity.checks.compare import compare_traces
from parity.trace import schema
from parity.trace.reader import load_trace
from parity.trace.writer import TraceWriter

#: End-to-end budget for `parity compare` on 100k steps.
TARGET_S = 3.0
EVENTS = ["zero_grad", "forward", "backward", "clip_grad_norm", "optimizer.step", "scheduler.step"]
ADAMW = {"amsgrad": False, "betas": [0.9, 0.999], "capturable": False, "decoupled_weight_decay": True,
         "differentiable": False, "eps": 1e-08, "foreach": None, "fused": None, "initial_lr": 0.001,
         "maximize": False, "weight_decay": 0.01}


def _f32(x: float) -> dict[str, Any]:
    """A scalar recorded the way digest.float_bits records a float32 tensor."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return {"bits": f"{bits:08x}", "dtype": "float32", "value": struct.unpack("<f", struct.pack("<I", bits))[0]}


def _next_ulp(rec: dict[str, Any]) -> dict[str, Any]:
    bits = int(rec["bits"], 16) + 1
    return {"bits": f"{bits:08x}", "dtype": "float32", "value": struct.unpack("<f", struct.pack("<I", bits))[0]}


def _hex(rng: random.Random, width: int = 16) -> str:
    return f"{rng.getrandbits(4 * width):0{width}x}"


def _step(i: int, rng: random.Random, divergent: random.Random | None, warmup: int = 1000) -> dict[str, Any]:
    """Step `i`; with `divergent`, the candidate's own numbers (drawn from it, so `rng` stays in lockstep)."""
    loss = _f32(2.3 * (0.9999 ** (i / 10)) + 0.01 * rng.random())
    norm = _f32(0.5 + 0.1 * rng.random())
    lr = 0.001 * min(1.0, (i + 1) / warmup)
    rec = {"type": schema.STEP, "step": i, "events": EVENTS, "losses": [loss], "groups": [{**ADAMW, "lr": lr}],
           "grad_norm": {**norm, "source": "clip_grad_norm_"}, "clip": {"max_norm": 1.0, "norm_type": 2.0},
           "batch": [_hex(rng)], "params": _hex(rng), "optim_state": _hex(rng),
           "rng": {"numpy": _hex(rng, 8), "python": _hex(rng, 8), "torch": _hex(rng, 8)},
           "wall_ms": round(20 + 5 * rng.random(), 4), "peak_mem_bytes": 325_000_000 + 4096 * (i % 100), "skipped": False}
    if divergent is not None:
        # What a real divergence looks like: same batch and RNG, loss one ulp off, everything downstream changed.
        rec["losses"] = [_next_ulp(loss)]
        rec["grad_norm"] = {**_next_ulp(norm), "source": "clip_grad_norm_"}
        rec["params"], rec["optim_state"] = _hex(divergent), _hex(divergent)
    return rec


def synthesise(directory: Path, steps: int, diverge_at: int | None) -> Path:
    """Write one run directory; the same seed for both sides keeps every shared value identical."""
    rng = random.Random(0)
    writer = TraceWriter(directory, 0)
    meta = {"argv": ["train.py", "--steps", str(steps)], "cuda": None, "cwd": "/work", "device": "cpu",
            "git": {"commit": "0" * 40, "dirty": False, "root": "/work"}, "hostname": "bench",
            "python": "3.11.7", "torch": "2.13.0+cpu"}
    writer.write({"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0,
                  "pid": 1, "level": "full", "meta": meta, "seed": 0, "deterministic": False})
    writer.write({"type": schema.META, "key": "argparse", "value": {"steps": steps, "lr": 0.001, "batch_size": 256}})
    writer.write({"type": schema.META, "key": "optimizers", "value": [
        {"class": "torch.optim.adamw.AdamW", "defaults": {k: v for k, v in ADAMW.items() if k != "initial_lr"} | {"lr": 0.001},
         "param_groups": 1, "params": 4_208_650}]})
    writer.write({"type": schema.META, "key": "schedulers", "value": [
        {"class": "torch.optim.lr_scheduler.LambdaLR", "state": {"base_lrs": [0.001], "last_epoch": 0, "lr_lambdas": [None]}}]})
    divergent = random.Random(1)
    for i in range(steps):
        writer.write(_step(i, rng, divergent if diverge_at is not None and i >= diverge_at else None))
    writer.write({"type": schema.END, "status": schema.END_OK, "steps": steps})
    writer.close()
    return writer.path


def _timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _cli(a: Path, b: Path) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "parity", "compare", str(a), str(b), "--format", "json"]
    return _timed(lambda: subprocess.run(cmd, capture_output=True, text=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--diverge-at", type=int, default=90_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", help="keep the synthesised runs here (reused when already there)")
    p.add_argument("--profile", action="store_true", help="cProfile one in-process CLI compare and print the top entries")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = p.parse_args()
    with contextlib.ExitStack() as stack:
        root = Path(args.dir) if args.dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parity-cmp-")))
        a, b = root / "a", root / "b"
        t_gen = 0.0
        for d, div in ((a, None), (b, args.diverge_at)):
            if not (d / "trace-rank0.jsonl").exists():
                dt, _ = _timed(lambda: synthesise(d, args.steps, div))
                t_gen += dt
        size = (a / "trace-rank0.jsonl").stat().st_size
        made = f"synthesised in {t_gen:.1f} s" if t_gen else f"reused from {root}"
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; traces: {args.steps:,} steps each, "
              f"{size / 2**20:.1f} MiB each, divergence planted at step {args.diverge_at:,} ({made})")

        # Sanity: the CLI must find the planted divergence, or the timing means nothing.
        _, proc = _cli(a, b)
        out = json.loads(proc.stdout)
        fd = out.get("first_divergence") or {}
        print(f"sanity: exit {proc.returncode}, verdict {out['verdict']}, first divergence step {fd.get('step')} "
              f"channel {fd.get('channel')}")
        if fd.get("step") != args.diverge_at:
            print("compare_speed: the planted divergence was not found where planted", file=sys.stderr)
            return 2

        rows: dict[str, list[float]] = {"parity compare (subprocess, end to end)": [],
                                        "python -c 'import parity.cli' (startup)": [],
                                        "load_trace(A)": [], "load_trace(B)": [], "compare_traces(A, B)": []}
        for _ in range(args.repeat):
            rows["parity compare (subprocess, end to end)"].append(_cli(a, b)[0])
            rows["python -c 'import parity.cli' (startup)"].append(
                _timed(lambda: subprocess.run([sys.executable, "-c", "import parity.cli"], check=True))[0])
            ta, trace_a = _timed(lambda: load_trace(a / "trace-rank0.jsonl"))
            tb, trace_b = _timed(lambda: load_trace(b / "trace-rank0.jsonl"))
            tc, _ = _timed(lambda: compare_traces(trace_a, trace_b))
            rows["load_trace(A)"].append(ta)
            rows["load_trace(B)"].append(tb)
            rows["compare_traces(A, B)"].append(tc)
            del trace_a, trace_b
        df = pd.DataFrame([{"what": k, "median (s)": statistics.median(v), "min (s)": min(v), "max (s)": max(v),
                            "runs": len(v)} for k, v in rows.items()])
        print()
        print(df.to_markdown(index=False, floatfmt=".3f"))
        e2e = statistics.median(rows["parity compare (subprocess, end to end)"])
        print(f"\nparity compare end to end = {e2e:.2f} s (target < {TARGET_S:g} s) -- {'OK' if e2e < TARGET_S else 'MISSED'}")

        if args.profile:
            from parity.cli import main as cli_main

            prof = cProfile.Profile()
            with contextlib.redirect_stdout(io.StringIO()):
                prof.runcall(cli_main, ["compare", str(a), str(b), "--format", "json"])
            stream = io.StringIO()
            stats = pstats.Stats(prof, stream=stream)
            stats.sort_stats("cumulative").print_stats(25)
            stats.sort_stats("tottime").print_stats(15)
            print("\ncProfile of one in-process `parity compare` (cumulative, then own time):")
            print(stream.getvalue())
        if args.json:
            Path(args.json).write_text(json.dumps({"steps": args.steps, "diverge_at": args.diverge_at,
                                                   "trace_bytes": size, "seconds": rows, "end_to_end_median": e2e},
                                                  indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
