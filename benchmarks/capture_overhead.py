"""Benchmark: training-step time under parity capture (full, every:10, minimal) relative to no capture.

All modes run in one process on one model, in interleaved blocks (the mode order rotates every round),
so that drift in a shared machine's load hits every mode alike. Prints a markdown table of median step
times, their median absolute deviation, and the median over rounds of each block's ratio to the
no-capture block of the same round, on two clocks: wall time and this thread's CPU time. With
--attribute it then times, per capture mode, the CPU time spent inside each of parity's hooks.

    python benchmarks/capture_overhead.py --rounds 7 --steps 15 --attribute
    python benchmarks/capture_overhead.py --device cuda --preset gpu,gpu-1b --dtype bf16 --json out.json

Each preset also prints the digests' floor: the bytes of parameters and optimizer state, read by one int64
sum kernel over a buffer of that size in the same run, as a fraction of the step without capture.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import json
import os
import platform
import pstats
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from parity.capture import digest, recorder
from parity.capture.config import ENV_STEP_WRITER, CaptureConfig
from parity.capture.patches import TorchPatches
from parity.capture.runtime import start_capture
from parity.trace.writer import TraceWriter

MODES = ("none", "full", "every:10", "minimal")
#: With --diagnose, two more blocks per round that split the overhead: `full` with a GPU step's host copy
#: launched when the step closes instead of at its update, and two no-op global module hooks without
#: capture (what torch's hooked module-call path costs by itself, before any of parity's work).
COPY_AT_CLOSE = "full/copy-at-close"
HOOKS_ONLY = "no-op-global-hooks"
#: Two more about where GPU steps are written: `full` with steps written on a background thread
#: (PARITY_STEP_WRITER=thread; the default writes them on the trainer's thread at the next update), and
#: that with CPython's thread switch interval at 0.5 ms instead of 5 ms (does the thread's share of the
#: interpreter lock cost the trainer's thread time?).
WRITE_ON_THREAD = "full/write-on-thread"
SHORT_SWITCH = "full/thread-switch-0.5ms"
DIAGNOSTIC = (COPY_AT_CLOSE, HOOKS_ONLY, WRITE_ON_THREAD, SHORT_SWITCH)
#: Model presets: (d_model, layers, heads, vocab, batch, seq) for the transformers; the cpu preset is an MLP.
#: gpu is the issue-12 168M model at batch 16x512; gpu-1b the 1.14B model (20 x 2048) at batch 8x1024.
TRANSFORMERS = {"gpu": (1024, 12, 16, 8192, 16, 512), "gpu-1b": (2048, 20, 16, 32768, 8, 1024)}
#: Ratio of full-capture to no-capture step time to stay under: on the CPU preset, and per GPU preset.
TARGETS = {"cpu": 1.05, "gpu": 1.03, "gpu-1b": 1.02}


def _mlp(hidden: int, layers: int, n_in: int, n_out: int) -> nn.Module:
    mods: list[nn.Module] = [nn.Linear(n_in, hidden), nn.GELU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(hidden, hidden), nn.GELU()]
    mods.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*mods)


class _Transformer(nn.Module):
    def __init__(self, vocab: int, d_model: int, layers: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)))


def _build(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    g = torch.Generator().manual_seed(0)
    if args.preset == "cpu":
        args.batch = args.batch or 256
        model = _mlp(args.hidden, args.layers, 1024, 10)
        x = torch.randn(args.batch, 1024, generator=g)
        y = torch.randint(0, 10, (args.batch,), generator=g)
        desc = f"MLP 1024-{args.hidden}x{args.layers}-10, batch {args.batch}"
    else:
        d_model, layers, heads, vocab, batch, seq = TRANSFORMERS[args.preset]
        batch, seq = args.batch or batch, args.seq or seq
        model = _Transformer(vocab, d_model, layers, heads)
        x = torch.randint(0, vocab, (batch, seq), generator=g)
        y = torch.randint(0, vocab, (batch, seq), generator=g)
        desc = f"transformer {layers}x{d_model} ({heads} heads), vocab {vocab}, batch {batch}x{seq}"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    return model.to(device=device, dtype=dtype), x.to(device), y.to(device), desc


def _make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sync: Callable[[], None],
               opt: torch.optim.Optimizer) -> Callable[[], tuple[float, float]]:
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))

    def step() -> tuple[float, float]:
        """(wall seconds, this thread's CPU seconds) for one training step."""
        sync()
        t0, c0 = time.perf_counter(), time.thread_time()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        sync()
        return time.perf_counter() - t0, time.thread_time() - c0
    return step


def _mad(xs: list[float]) -> float:
    m = statistics.median(xs)
    return statistics.median(abs(v - m) for v in xs)


@contextlib.contextmanager
def _mode(mode: str, directory: Path) -> Iterator[None]:
    """The state one block runs in: no capture, a capture level, or a diagnostic variant (DIAGNOSTIC)."""
    if mode == "none":
        yield
        return
    if mode == HOOKS_ONLY:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
        handles = [register_module_forward_pre_hook(lambda module, args: None),
                   register_module_forward_hook(lambda module, args, kwargs, output=None: None,
                                                with_kwargs=True, always_call=True)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        return
    saved, switch = recorder._copy_at_update, sys.getswitchinterval()
    if mode == COPY_AT_CLOSE:
        recorder._copy_at_update = lambda: False  # the recorder then builds the step's copy when the step closes
    if mode == SHORT_SWITCH:
        sys.setswitchinterval(0.0005)
    # The writer is read when the recorder is made, in start_capture; the user's own setting is put back after.
    on_thread = {ENV_STEP_WRITER: "thread"} if mode in (WRITE_ON_THREAD, SHORT_SWITCH) else {}
    with mock.patch.dict(os.environ, on_thread):
        capture = start_capture(directory, CaptureConfig.parse(mode.split("/")[0]))
    try:
        yield
    finally:
        capture.stop()
        recorder._copy_at_update = saved
        sys.setswitchinterval(switch)


def measure(step: Callable[[], tuple[float, float]], rounds: int, steps: int, tmp: Path,
            modes: tuple[str, ...] = MODES) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per clock (wall, cpu) and mode: every step time, and each round's block median.

    Capture is started and stopped outside the timed steps (start_capture gathers git and host metadata once).
    """
    out = {clock: {"times": {m: [] for m in modes}, "block_medians": {m: [] for m in modes}} for clock in ("wall", "cpu")}
    for r in range(rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for mode in order:
            with _mode(mode, tmp / f"r{r}-{mode.replace(':', '').replace('/', '-')}"):
                block = [step() for _ in range(steps)]
            # The first step of a block opens the trace file and pays one-off costs: not a steady-state step.
            for k, clock in enumerate(("wall", "cpu")):
                ts = [t[k] for t in block[1:]]
                out[clock]["times"][mode] += ts
                out[clock]["block_medians"][mode].append(statistics.median(ts))
    return out


#: Where capture spends its time, timed inclusively (nested entries are part of their callers).
ATTRIBUTED = [
    (TorchPatches, "_forward_pre"), (TorchPatches, "_forward_post"), (TorchPatches, "_before_step"),
    (TorchPatches, "_after_step"), (recorder.Recorder, "event"), (recorder.Recorder, "_write_step"),
    (TraceWriter, "write"), (recorder.Recorder, "on_loss"), (recorder.Recorder, "on_clip"),
    (recorder.Recorder, "on_batch"), (recorder.Recorder, "before_update"), (recorder.Recorder, "after_update"),
    (digest, "digest_tensors"), (recorder, "rng_digests"),
]


@contextlib.contextmanager
def _attributed() -> Iterator[dict[str, list[float]]]:
    """Wrap the ATTRIBUTED functions with thread-CPU-time counters: name -> [calls, seconds].

    Installed before start_capture, because the patches bind their hook methods when installed.
    """
    totals: dict[str, list[float]] = {}
    saved: list[tuple[Any, str, Any]] = []

    def timed(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                entry = totals.setdefault(name, [0, 0.0])
                entry[0] += 1
                entry[1] += time.thread_time() - t0
        return wrapper

    for owner, attr in ATTRIBUTED:
        original = vars(owner)[attr]
        saved.append((owner, attr, original))
        name = f"{owner.__name__.rsplit('.', 1)[-1]}.{attr}"
        setattr(owner, attr, timed(name, original))
    # recorder.py calls digest.digest_tensors and rng_digests through module globals: patching the modules reaches them.
    try:
        yield totals
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def attribute(step: Callable[[], tuple[float, float]], steps: int, tmp: Path, base_cpu: float) -> pd.DataFrame:
    """One extra block per capture mode with the counters on: CPU ms per step inside each parity function."""
    rows = []
    for mode in MODES[1:]:
        with _attributed() as totals:
            capture = start_capture(tmp / f"attr-{mode.replace(':', '')}", CaptureConfig.parse(mode))
            try:
                step()  # opens the trace file; not counted
                totals.clear()
                for _ in range(steps):
                    step()
                counted = {k: list(v) for k, v in totals.items()}  # before stop() writes the last step
            finally:
                capture.stop()
        order = [f"{o.__name__.rsplit('.', 1)[-1]}.{a}" for o, a in ATTRIBUTED]
        for name, (calls, secs) in sorted(counted.items(), key=lambda kv: order.index(kv[0])):
            rows.append({"mode": mode, "function": name, "calls/step": calls / steps,
                         "CPU ms/step": secs / steps * 1e3, "% of no-capture CPU step": 100 * secs / steps / base_cpu})
    return pd.DataFrame(rows)


def profile(step: Callable[[], tuple[float, float]], mode: str, steps: int, tmp: Path, top: int = 40) -> None:
    """Run `steps` steps in `mode` under cProfile and print the functions with the most own host time."""
    profiler = cProfile.Profile()
    with _mode(mode, tmp / "profile"):
        step()  # opens the trace file; not profiled
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
    print(f"\nhost time by function, {mode}, {steps} steps (cProfile; times inflated by its own overhead):\n")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


def _fast(xs: list[float]) -> float:
    """The 10th percentile: a neighbour's interference only ever adds time, so the fast steps show a mode's
    own cost when the medians are moved by a noisy host."""
    return float(np.percentile(xs, 10))


def summarise(clock: str, data: dict[str, dict[str, list[float]]], floor_s: float,
              modes: tuple[str, ...] = MODES) -> pd.DataFrame:
    rows = []
    base_blocks = data["block_medians"]["none"]
    base = statistics.median(data["times"]["none"])
    # What a digest must cost at least: reading the parameters and optimizer state once, every
    # digested step (every 10th under every:10; never under none and minimal).
    floors = {"none": 0.0, "full": floor_s, "every:10": floor_s / 10, "minimal": 0.0, HOOKS_ONLY: 0.0,
              COPY_AT_CLOSE: floor_s, WRITE_ON_THREAD: floor_s, SHORT_SWITCH: floor_s}
    base_fast = _fast(data["times"]["none"])
    for mode in modes:
        ts = data["times"][mode]
        ratios = [b / n for b, n in zip(data["block_medians"][mode], base_blocks)]
        rows.append({"clock": clock, "mode": mode, "steps": len(ts), "median step (ms)": statistics.median(ts) * 1e3,
                     "MAD (ms)": _mad(ts) * 1e3, "ratio vs none (pooled)": statistics.median(ts) / base,
                     "ratio vs none (per-round median)": statistics.median(ratios), "ratio MAD": _mad(ratios),
                     "ratio vs none (fast steps, p10)": _fast(ts) / base_fast,
                     "floor (fraction of step)": floors[mode] / base})
    return pd.DataFrame(rows)


def digest_floor(tensors: list[torch.Tensor], sync: Callable[[], None]) -> tuple[int, float]:
    """(bytes the digests read per step, seconds of one int64 sum kernel over a buffer that big)."""
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    device = tensors[0].device
    buffer = torch.ones((nbytes + 7) // 8, dtype=torch.int64, device=device)
    times = []
    for _ in range(7):
        sync()
        t0 = time.perf_counter()
        buffer.sum()
        sync()
        times.append(time.perf_counter() - t0)
    del buffer
    return nbytes, statistics.median(times[2:])


def run_preset(args: argparse.Namespace, preset: str, device: torch.device) -> dict[str, Any]:
    """Build the preset's model, time every capture mode side by side, print the tables; the results."""
    args = argparse.Namespace(**{**vars(args), "preset": preset})
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    steps = args.steps or (20 if preset == "cpu" else 30)
    model, x, y, desc = _build(args, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    step = _make_step(model, x, y, sync, opt)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n## preset {preset}: {desc}, {args.dtype}, {n_params:,} parameters")
    modes = MODES + DIAGNOSTIC if args.diagnose else MODES
    if not args.profile:
        print(f"plan: {args.warmup} warm-up steps, then {args.rounds} rounds x {list(modes)} x {steps} steps "
              "(first step of each block dropped)")
    for _ in range(args.warmup):
        step()
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
            profile(step, args.profile, steps, Path(tmp))
        return {"preset": preset, "model": desc, "profiled": args.profile}
    state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    nbytes, floor_s = digest_floor([p.detach() for p in model.parameters()] + state, sync)
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        data = measure(step, args.rounds, steps, Path(tmp), modes)
        attribution = attribute(step, steps, Path(tmp), statistics.median(data["cpu"]["times"]["none"])) \
            if args.attribute else None
    # Thread CPU time is reported beside wall time: on a shared box it leaves out the time other processes
    # hold the core, which swamps a few-percent overhead in wall time. On CUDA it only measures the host.
    df = pd.concat([summarise(clock, data[clock], floor_s, modes) for clock in ("wall", "cpu")], ignore_index=True)
    base = statistics.median(data["wall"]["times"]["none"])
    print(f"step without capture: {base * 1e3:.2f} ms (wall, median)")
    spread = _mad(data["wall"]["times"]["none"]) / base
    if spread > 0.02:
        print(f"noisy host: the step without capture itself varies by {spread:.1%} (wall MAD / median); the medians "
              "then carry that noise as well as each mode's cost: read the p10 column beside them")
    print(f"digest floor: {nbytes / 1e9:.3f} GB of parameters + optimizer state; one int64 sum over a buffer that "
          f"big takes {floor_s * 1e3:.3f} ms ({nbytes / floor_s / 1e9:.0f} GB/s) = {floor_s / base:.4f} of a step")
    print()
    print(df.to_markdown(index=False, floatfmt=".3f"))
    full = {clock: float(df.loc[(df["clock"] == clock) & (df["mode"] == "full"), "ratio vs none (per-round median)"].iloc[0])
            for clock in ("wall", "cpu")}
    print()
    for clock in ("wall", "cpu") if device.type == "cpu" else ("wall",):
        target = TARGETS[device.type if device.type == "cpu" else preset]
        verdict = " -- OK" if full[clock] <= target else " -- MISSED"
        print(f"full/none = {full[clock]:.3f}x (target <= {target:.2f}; {clock} time){verdict}")
    if attribution is not None:
        print("\nwhere capture spends CPU time (inclusive: _write_step runs inside event, TraceWriter.write inside "
              "_write_step, digest_tensors/rng_digests inside on_batch/after_update):")
        if device.type == "cuda":
            print("(on CUDA a step whose device values have not arrived is written a step later; these are host times)")
        print()
        print(attribution.to_markdown(index=False, floatfmt=".3f"))
    result = {"preset": preset, "model": desc, "dtype": args.dtype, "parameters": n_params, "steps": steps,
              "digest_bytes": nbytes, "floor_ms": floor_s * 1e3, "step_ms_without_capture": base * 1e3,
              "table": df.to_dict(orient="records"), "full_over_none": full, "raw": data,
              "attribution": None if attribution is None else attribution.to_dict(orient="records")}
    del model, opt, step, x, y
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--preset", default=None,
                   help=f"model, or several comma-separated, run one after another: cpu, {', '.join(TRANSFORMERS)} "
                        "(default: cpu on cpu, gpu on cuda)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per block (default 20 cpu, 30 gpu)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of [none, full, every:10, minimal] blocks")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the first round")
    p.add_argument("--hidden", type=int, default=1024, help="cpu preset: MLP width")
    p.add_argument("--layers", type=int, default=4, help="cpu preset: MLP hidden layers")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256 cpu; the gpu presets' own)")
    p.add_argument("--seq", type=int, default=None, help="gpu presets: sequence length (default the preset's own)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="parameters and optimizer state")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on cpu: on a shared 2-core box a second thread waiting at "
                        "OpenMP barriers turns steps 10x noisier; default on cuda: torch's own)")
    p.add_argument("--attribute", action="store_true",
                   help="after the timing, one block per mode with thread-CPU-time counters around parity's hooks")
    p.add_argument("--diagnose", action="store_true",
                   help=f"four more blocks per round: {COPY_AT_CLOSE} (full, a GPU step's host copy launched when the "
                        f"step closes rather than at its update), {HOOKS_ONLY} (no capture, two no-op global module "
                        f"hooks: the cost of torch's hooked call path alone), {WRITE_ON_THREAD} (full, GPU steps written "
                        f"on a background thread, not on the trainer's thread at the next update) and {SHORT_SWITCH} "
                        "(the same with CPython's thread switch interval at 0.5 ms)")
    p.add_argument("--profile", metavar="MODE", choices=MODES + DIAGNOSTIC,
                   help="instead of timing: run one block of MODE under cProfile and print where host time goes")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = p.parse_args()
    presets = (args.preset or ("gpu" if args.device == "cuda" else "cpu")).split(",")
    unknown = [x for x in presets if x != "cpu" and x not in TRANSFORMERS]
    if unknown:
        p.error(f"--preset: unknown {', '.join(unknown)}; choose from cpu, {', '.join(TRANSFORMERS)}")
    if args.threads or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print("Reproduce (from the project root): " + " ".join(shlex.quote(a) for a in ["python", *sys.argv]))
    print(f"device: {args.device} ({name}), dtype {args.dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}, digest {digest.DIGEST_VERSION}")
    results = [run_preset(args, preset, device) for preset in presets]
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": sys.argv, "device": args.device, "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "dtype": args.dtype, "rounds": args.rounds, "presets": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
