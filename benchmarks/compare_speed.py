"""Benchmark: how long `parity compare` takes on two N-step traces with a divergence at 90% of the steps, and
how much memory it needs.

Synthesises two run directories per size (step records shaped like the recorder's: events, one loss, one
AdamW param group, grad_norm, clip, batch/params/optim_state/rng digests, wall_ms, peak_mem_bytes),
identical except from the planted step on, where a real divergence would show: the loss moves by one ulp
at that step, and gradient norm, parameters and optimizer state differ from it on. Then, per size, times
`parity compare A B --format json` as a subprocess with a cold cache (the columnar caches deleted: the
first compare of a new run) and a warm one, with the subprocess's peak resident memory (ru_maxrss), and in
process the warm `load_trace` of both sides and `compare_traces` (the checks). The first size is the one
held to the targets.

    python benchmarks/compare_speed.py                            # 100k steps, 5 repetitions
    python benchmarks/compare_speed.py --sizes 10000,100000,1000000 --dir /tmp/bench   # the memory table
    python benchmarks/compare_speed.py --profile                  # also cProfile one in-process compare
    python benchmarks/compare_speed.py --compare-with ../old      # also time another checkout's parity, side by side
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
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from parity.checks.compare import compare_traces
from parity.trace import cache, schema
from parity.trace.reader import load_trace
from parity.trace.writer import TraceWriter

#: End-to-end budget for `parity compare` on 100k steps.
TARGET_S = 0.5
#: Budget for the checks themselves (compare_traces on two loaded traces).
CHECKS_TARGET_S = 0.05
#: Peak resident memory allowed when comparing two 1,000,000-step traces.
MEMORY_TARGET_MIB = 1024
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


def _cli(a: Path, b: Path, pythonpath: str | None = None) -> tuple[float, int, str, int]:
    """(wall seconds, exit code, stdout, peak resident KiB) of one `parity compare` subprocess."""
    cmd = [sys.executable, "-m", "parity", "compare", str(a), str(b), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        # From the other checkout's folder: `python -m` puts the working directory first on the path.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=pythonpath)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return wall, proc.returncode, out.read().decode(), usage.ru_maxrss


def _drop_caches(*runs: Path) -> None:
    for run in runs:
        for location in cache.cache_locations(run / "trace-rank0.jsonl"):
            location.unlink(missing_ok=True)


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _measure(a: Path, b: Path, repeat: int) -> dict[str, Any]:
    """Cold and warm end to end, peak memory, warm load and checks; minimum over `repeat` runs each."""
    cold, cold_rss = [], []
    for _ in range(max(1, repeat // 2)):
        _drop_caches(a, b)
        wall, _, _, rss = _cli(a, b)
        cold.append(wall)
        cold_rss.append(rss)
    warm, warm_rss, loads, checks = [], [], [], []
    for _ in range(repeat):
        wall, _, _, rss = _cli(a, b)
        warm.append(wall)
        warm_rss.append(rss)
        t_load, (trace_a, trace_b) = _timed(lambda: (load_trace(a / "trace-rank0.jsonl"), load_trace(b / "trace-rank0.jsonl")))
        t_checks, _ = _timed(lambda: compare_traces(trace_a, trace_b))
        loads.append(t_load)
        checks.append(t_checks)
        del trace_a, trace_b
    return {"cold_s": min(cold), "cold_rss_mib": max(cold_rss) / 1024, "warm_s": min(warm),
            "warm_rss_mib": max(warm_rss) / 1024, "load_s": min(loads), "checks_s": min(checks),
            "runs": {"cold": cold, "warm": warm, "load": loads, "checks": checks}}


def _runs(root: Path, steps: int) -> tuple[Path, Path, float]:
    a, b = root / f"{steps}" / "a", root / f"{steps}" / "b"
    made = 0.0
    for d, div in ((a, None), (b, steps * 9 // 10)):
        if not (d / "trace-rank0.jsonl").exists():
            made += _timed(lambda: synthesise(d, steps, div))[0]
    return a, b, made


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000", help="comma-separated step counts (default 100000); the first is "
                   "held to the targets, and 1000000 to the memory target")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", help="keep the synthesised runs here (reused when already there)")
    p.add_argument("--profile", action="store_true", help="cProfile one in-process CLI compare and print the top entries")
    p.add_argument("--compare-with", metavar="DIR", help="a checkout whose parity to time side by side (PYTHONPATH=DIR)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"machine: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {_load()} (1/5/15 min)")
    results: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        root = Path(args.dir) if args.dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parity-cmp-")))
        for steps in sizes:
            a, b, made = _runs(root, steps)
            size = (a / "trace-rank0.jsonl").stat().st_size
            # Sanity: the CLI must find the planted divergence, or the timing means nothing.
            _, code, out, _ = _cli(a, b)
            fd = json.loads(out).get("first_divergence") or {}
            print(f"\n{steps:,} steps: {size / 2**20:.1f} MiB per trace"
                  + (f" (synthesised in {made:.1f} s)" if made else f" (reused from {root})")
                  + f"; sanity: exit {code}, first divergence step {fd.get('step')} channel {fd.get('channel')}")
            if fd.get("step") != steps * 9 // 10:
                print("compare_speed: the planted divergence was not found where planted", file=sys.stderr)
                return 2
            results[steps] = _measure(a, b, args.repeat)
            results[steps]["trace_mib"] = size / 2**20
            if args.compare_with:
                other = [_cli(a, b, args.compare_with) for _ in range(max(1, args.repeat // 2))]
                results[steps]["other_s"] = min(o[0] for o in other)
                results[steps]["other_rss_mib"] = max(o[3] for o in other) / 1024
        print(f"\nload after measuring: {_load()}; times are the minimum over the repetitions, memory the maximum")
        print("\n| steps | trace (MiB) | cold end to end (s) | cold peak RSS (MiB) | warm end to end (s) | "
              "warm peak RSS (MiB) | load both, warm (s) | checks (s) |" + (" other checkout (s) | other RSS (MiB) |" if args.compare_with else ""))
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if args.compare_with else ""))
        for steps, r in results.items():
            other = f" {r['other_s']:.3f} | {r['other_rss_mib']:.0f} |" if args.compare_with else ""
            print(f"| {steps:,} | {r['trace_mib']:.1f} | {r['cold_s']:.3f} | {r['cold_rss_mib']:.0f} | {r['warm_s']:.3f} | "
                  f"{r['warm_rss_mib']:.0f} | {r['load_s']:.3f} | {r['checks_s']:.3f} |{other}")
        first = results[sizes[0]]
        print(f"\nparity compare, {sizes[0]:,} steps, warm cache: {first['warm_s']:.3f} s end to end (target < {TARGET_S:g} s) -- "
              f"{'OK' if first['warm_s'] < TARGET_S else 'MISSED'}; checks {first['checks_s'] * 1000:.0f} ms (target < "
              f"{CHECKS_TARGET_S * 1000:.0f} ms) -- {'OK' if first['checks_s'] < CHECKS_TARGET_S else 'MISSED'}")
        if 1_000_000 in results:
            peak = max(results[1_000_000]["cold_rss_mib"], results[1_000_000]["warm_rss_mib"])
            print(f"1,000,000 steps: peak RSS {peak:.0f} MiB (target < {MEMORY_TARGET_MIB} MiB) -- "
                  f"{'OK' if peak < MEMORY_TARGET_MIB else 'MISSED'}")

        if args.profile:
            from parity.cli import main as cli_main

            a, b, _ = _runs(root, sizes[0])
            prof = cProfile.Profile()
            with contextlib.redirect_stdout(io.StringIO()):
                prof.runcall(cli_main, ["compare", str(a), str(b), "--format", "json"])
            stream = io.StringIO()
            stats = pstats.Stats(prof, stream=stream)
            stats.sort_stats("cumulative").print_stats(25)
            stats.sort_stats("tottime").print_stats(15)
            print("\ncProfile of one in-process `parity compare` (warm cache; cumulative, then own time):")
            print(stream.getvalue())
        if args.json:
            Path(args.json).write_text(json.dumps({"sizes": sizes, "load": os.getloadavg(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
