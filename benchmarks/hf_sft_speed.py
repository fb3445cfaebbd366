"""Benchmark: training speed of seed 004's BEFORE and AFTER TrainingArguments, and of each changed argument alone.

One invocation runs every configuration on the same machine, one after another, each in a fresh
subprocess: BEFORE (`reference.hf_sft.train`), AFTER (`implementations.hf_sft_optimized.train`), and
BEFORE with each `[[toggle]]` of the pair file applied alone (`--reverts` adds AFTER with each reverted
alone). Per configuration it prints optimizer steps/s, tokens/s (non-pad tokens the model trained on),
peak memory (torch.cuda.max_memory_allocated on CUDA, the process's max RSS on CPU) and the GPU
utilisation sampled while the timed steps ran, each also as a ratio to BEFORE, plus the padding share
of the trained batches; and how many examples a 2048- and a 1536-token truncation cut.

    python benchmarks/hf_sft_speed.py --model_size 1b --steps 25 --json hf_sft_speed.json        # H200
    python benchmarks/hf_sft_speed.py --model_size tiny --scale 4 --steps 4 --skip 1 --n 400      # CPU

steps/s is per optimizer step, so accumulation 8 -> 4 alone doubles it at equal work: compare tokens/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: the trainers are imported from the repository
    sys.path.insert(0, str(REPO))

from reference.hf_sft.data import as_text, generate, write_jsonl  # noqa: E402
from reference.hf_sft.tokenizer import ByteTokenizer  # noqa: E402

DEFAULT_PAIR = "gpu-hf-trainer-before-vs-after"
SIDES = {"before": ("reference.hf_sft.train", "BEFORE"), "after": ("implementations.hf_sft_optimized.train", "AFTER")}


class _UtilSampler:
    """Polls GPU utilisation (pynvml if importable, else nvidia-smi) in a thread; never touches the CUDA context."""

    def __init__(self, index: int, period_s: float = 0.1) -> None:
        self.index, self.period_s, self.samples = index, period_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._read = self._reader()

    def _reader(self):  # type: ignore[no-untyped-def]
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # no pynvml, or no NVML library: fall back to the command-line tool
            if shutil.which("nvidia-smi") is None:
                return None
            cmd = ["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            return lambda: float(subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.split()[0])

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.samples.append(self._read())
            except Exception:  # one failed poll (tool busy, timeout) loses one sample, not the run
                continue

    def start(self) -> None:
        if self._read is not None:
            self._thread.start()

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return sum(self.samples) / len(self.samples) if self.samples else None


def _child(out: Path, side: str, skip: int, argv: list[str]) -> int:
    """Train one configuration in this process and write its measurements to `out` (JSON)."""
    import importlib

    import torch
    from transformers import TrainerCallback

    from reference.hf_sft.train import build_parser, build_trainer

    module, defaults = SIDES[side]
    args = build_parser(getattr(importlib.import_module(module), defaults), prog=module).parse_args(argv)
    trainer = build_trainer(args)
    cuda = trainer.args.device.type == "cuda"
    tokens = torch.zeros((), dtype=torch.long, device=trainer.args.device)
    count = {"positions": 0, "snapshot": None}

    def on_forward(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if mask is not None and torch.is_grad_enabled():
            tokens.add_(mask.sum())  # stays on the device: no synchronisation per micro-batch
            count["positions"] += mask.numel()

    sampler = _UtilSampler(torch.cuda.current_device() if cuda else 0) if cuda else None
    clock: dict[str, float] = {}

    class _Probe(TrainerCallback):
        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step not in (skip, state.max_steps):
                return
            if cuda:  # the clock reads when the GPU has finished the step, not when it was queued
                torch.cuda.synchronize()
            clock["t0" if state.global_step == skip else "t1"] = time.perf_counter()
            if state.global_step == skip:
                count["snapshot"] = tokens.item()
                if sampler:
                    sampler.start()

    handle = trainer.model.register_forward_pre_hook(on_forward, with_kwargs=True)
    trainer.add_callback(_Probe())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train()
    handle.remove()
    util = sampler.stop() if sampler else None
    seconds = clock["t1"] - clock["t0"]
    timed = args.max_steps - skip
    total = int(tokens.item())
    record = {
        "side": side, "argv": argv, "steps": args.max_steps, "timed_steps": timed, "seconds": seconds,
        "steps_per_s": timed / seconds, "tokens_per_s": (total - count["snapshot"]) / seconds,
        "tokens": total, "pad_fraction": 1 - total / max(1, count["positions"]),
        "peak_mem_bytes": torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "gpu_util": util, "train_loss": result.training_loss, "device": str(trainer.args.device),
        "dtype": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "tf32_matmul": _matmul_fp32_precision() if cuda else None,
        "effective_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps,
    }
    out.write_text(json.dumps(record, sort_keys=True, indent=1))
    return 0


def _matmul_fp32_precision() -> str:
    """How CUDA matmuls run float32: "tf32" or "ieee"/"none". Read through the newer API: torch refuses to read
    the legacy `allow_tf32` once a trainer (TrainingArguments(tf32=True)) set the new one."""
    import torch

    try:
        return str(torch.backends.cuda.matmul.fp32_precision)
    except AttributeError:  # torch < 2.9: only the legacy flag exists
        return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _configurations(pair: str, reverts: bool) -> list[tuple[str, str, list[str]]]:
    """(label, side, extra arguments): BEFORE, AFTER, each toggle applied to BEFORE (and reverted from AFTER)."""
    from parity.pairs import load_pair

    toggles = load_pair(pair).toggles
    configs = [("BEFORE", "before", []), ("AFTER", "after", [])]
    configs += [(f"BEFORE + {t.name}", "before", list(t.candidate)) for t in toggles]
    if reverts:
        configs += [(f"AFTER - {t.name}", "after", list(t.baseline)) for t in toggles]
    return configs


def _truncation(path: Path, scale: int) -> dict[str, Any]:
    lengths = [ByteTokenizer().num_tokens(as_text(json.loads(line))) for line in path.read_text().splitlines()]
    return {"examples": len(lengths), "max_tokens": max(lengths),
            **{f"truncated_at_{n}": sum(length > n // scale for length in lengths) for n in (2048, 1536)}}


def summarize(rows: list[dict[str, Any]]) -> Any:
    """A DataFrame, one row per configuration, with each speed metric and its ratio to the BEFORE row."""
    import pandas as pd

    base = next(r for r in rows if r["config"] == "BEFORE")
    table = []
    for r in rows:
        def ratio(key: str) -> float | None:
            return None if r.get(key) is None or not base.get(key) else r[key] / base[key]
        table.append({
            "config": r["config"], "eff. batch": r["effective_batch"],
            "steps/s": r["steps_per_s"], "x steps/s": ratio("steps_per_s"),
            "tokens/s": r["tokens_per_s"], "x tokens/s": ratio("tokens_per_s"),
            "peak mem GiB": r["peak_mem_bytes"] / 2**30, "x mem": ratio("peak_mem_bytes"),
            "GPU util %": "n/a" if r.get("gpu_util") is None else round(r["gpu_util"], 1),
            "x util": "n/a" if ratio("gpu_util") is None else round(ratio("gpu_util"), 3),
            "pad frac": r["pad_fraction"], "train loss": r["train_loss"]})
    return pd.DataFrame(table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(Path(argv[1]), argv[2], int(argv[3]), argv[5:])  # --child OUT SIDE SKIP -- TRAINER ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n" + "\n".join(line for line in __doc__.splitlines() if "hf_sft_speed.py --" in line))
    p.add_argument("--model_size", default="1b", choices=("tiny", "1b"))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, default=25, help="optimizer steps per configuration")
    p.add_argument("--skip", type=int, default=3, help="first steps left out of the timing (warm-up)")
    p.add_argument("--scale", type=int, default=1, help="divide data lengths and max_seq_length (CPU: 4)")
    p.add_argument("--n", type=int, default=4000, help="examples generated")
    p.add_argument("--pair", default=DEFAULT_PAIR, help="pair file whose [[toggle]] tables give the single changes")
    p.add_argument("--only", default=None, help="comma-separated labels to run (e.g. BEFORE,AFTER); default all")
    p.add_argument("--reverts", action="store_true", help="also AFTER with each toggle reverted alone")
    p.add_argument("--workdir", type=Path, default=None, help="data and output directories (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = p.parse_args(argv)
    if not 0 < args.skip < args.steps:
        p.error("--skip must be >= 1 and below --steps")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hf_sft_speed-"))
    data = work / "data.jsonl"
    write_jsonl(generate(args.n, seed=0, scale=args.scale), data)
    configs = _configurations(args.pair, args.reverts)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        configs = [c for c in configs if c[0] in wanted]
        if "BEFORE" not in [c[0] for c in configs]:
            p.error("--only must include BEFORE (every ratio is to it)")
    # From the project root, with no machine's paths: the line a reader runs to reproduce the table.
    print("Reproduce (from the project root):", shlex.join(["python", str(Path(__file__).resolve().relative_to(REPO)), *argv]))
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for i, (label, side, extra) in enumerate(configs):
        trainer_args = ["--data_path", str(data), "--model_size", args.model_size, "--output_dir", str(work / f"out{i}"),
                        "--max_steps", str(args.steps), "--seed", "0", "--device", args.device, "--scale", str(args.scale),
                        "--save_final_model", "false", "--save_strategy", "no", *extra]
        out = work / f"config{i}.json"
        shown = [a.replace(str(work), "$WORKDIR") for a in trainer_args]  # the temporary folder, by name
        print(f"[{i + 1}/{len(configs)}] {label}: {shlex.join(shown)}", flush=True)
        done = subprocess.run([sys.executable, __file__, "--child", str(out), side, str(args.skip), "--", *trainer_args], cwd=REPO)
        if done.returncode != 0:  # one failed configuration is reported, the others still run
            print(f"error: {label} exited with {done.returncode}", file=sys.stderr)
            failed.append(label)
            if i == 0:
                return 1  # every ratio is to BEFORE
            continue
        row = json.loads(out.read_text())
        row["argv"] = [str(a).replace(str(work), "$WORKDIR") for a in row.get("argv", [])]
        rows.append({"config": label, **row})
    truncation = _truncation(data, args.scale)
    first = rows[0]
    import torch
    import transformers

    print(f"device: {first['device']} ({torch.cuda.get_device_name() if first['device'].startswith('cuda') else platform.processor() or platform.machine()}), "
          f"dtype: {first['dtype']}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"model {args.model_size}, scale {args.scale}, {args.steps} steps ({args.steps - args.skip} timed)")
    print(f"data: {truncation['examples']} examples, max {truncation['max_tokens']} tokens; truncated at "
          f"{2048 // args.scale}: {truncation['truncated_at_2048']}, at {1536 // args.scale}: {truncation['truncated_at_1536']}")
    print(summarize(rows).to_markdown(index=False, floatfmt=".3f"))
    if failed:
        print(f"failed (see their output above): {', '.join(failed)}")
    if args.json:
        args.json.write_text(json.dumps({"command": argv, "truncation": truncation, "rows": rows, "failed": failed},
                                        indent=1, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
