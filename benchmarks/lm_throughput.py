"""Benchmark: tokens/s of seed 002's two LM trainers, side by side in one process on the same device and preset.

    python benchmarks/lm_throughput.py                                   # CPU, tiny preset
    python benchmarks/lm_throughput.py --device cuda --preset full --dtype bf16 --json lm_throughput.json   # GPU

Rows: `lm_sample` (one document per step, cut or padded to the sequence length), `lm_sample --pack` (one
packed sequence per step: the same step size without padding), and `lm_chunked` (--tokens-per-chunk
packed tokens per step). Each side is built by its own trainer module and steps through its own
batch-making method; charts, samples and checkpoints are switched off (intervals beyond the run), so
a step is data fetch + tokenisation + forward/backward/update. The first --skip steps of each side are
not timed. tokens/s counts the targets the loss used (padding excluded); "compute tokens/s" counts
every position the model ran on, padding included. All sides share one corpus and tokenizer. Peak
memory is torch.cuda.max_memory_allocated per side on CUDA, the process's peak RSS so far on CPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: the trainers are imported from the repository
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from implementations.lm_chunked import train as chunked  # noqa: E402
from reference.lm_sample import train as sample  # noqa: E402
from reference.lm_sample.config import config_from_args  # noqa: E402
from reference.lm_sample.data import Batch  # noqa: E402
from reference.lm_sample.session import TrainingSession  # noqa: E402

#: An interval no benchmark run reaches: no chart, sample or checkpoint inside the timed steps.
NEVER = 10**9


@dataclass
class SideResult:
    side: str
    steps: int
    step_ms: float
    """Median wall time of a step (data + training)."""
    tokens_per_second: float
    """Loss targets per second of wall time over the timed steps."""
    compute_tokens_per_second: float
    """Model positions (padding included) per second of wall time."""
    tokens_per_step: float
    padding_share: float
    peak_memory_mb: float
    final_loss: float


def _flags(args: argparse.Namespace, data_dir: Path, out: Path) -> list[str]:
    return ["--preset", args.preset, "--device", args.device, "--dtype", args.dtype, "--seed", str(args.seed),
            "--data-dir", str(data_dir), "--output-dir", str(out), "--viz-interval", str(NEVER),
            "--checkpoint-interval", str(NEVER), "--display-every", str(NEVER), "--warmup-steps", "10"]


def _build(side: str, args: argparse.Namespace, data_dir: Path, out: Path) -> tuple[TrainingSession, Callable[[], Batch],
                                                                                     Callable[[Batch], Any]]:
    """The side's session, its own batch maker and step function (the trainer classes' methods)."""
    total = args.skip + args.steps
    if side == "lm_chunked":
        parsed = chunked.build_parser().parse_args(
            [*_flags(args, data_dir, out), "--max-chunks", str(total), "--tokens-per-chunk", str(args.tokens_per_chunk)])
        session = TrainingSession(config_from_args(parsed, total_steps=total), say=lambda *_: None)
        trainer = chunked.ChunkTrainer(session, parsed.tokens_per_chunk)
        return session, trainer.accumulate_chunk, trainer.train_on_chunk
    pack = side.endswith("--pack")
    parsed = sample.build_parser().parse_args([*_flags(args, data_dir, out), "--steps", str(total),
                                               *(["--pack"] if pack else [])])
    session = TrainingSession(config_from_args(parsed, total_steps=total), say=lambda *_: None)
    trainer = sample.SampleTrainer(session, pack=pack)
    return session, trainer.next_sample, trainer.train_step


def measure(side: str, args: argparse.Namespace, data_dir: Path, out: Path) -> SideResult:
    session, next_batch, step = _build(side, args, data_dir, out)
    if session.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, tokens, positions, loss = [], 0, 0, float("nan")
    try:
        for i in range(args.skip + args.steps):
            started = time.perf_counter()
            batch = next_batch()
            loss = step(batch)[0]  # .item() inside: the step's GPU work has finished
            seconds = time.perf_counter() - started
            if i >= args.skip:
                times.append(seconds)
                tokens += batch.tokens
                positions += batch.inputs.numel()
    finally:
        session.finish()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if session.device.type == "cuda"
            else _rss_mb())
    total = sum(times)
    result = SideResult(side=side, steps=len(times), step_ms=1e3 * statistics.median(times),
                        tokens_per_second=tokens / total, compute_tokens_per_second=positions / total,
                        tokens_per_step=tokens / len(times), padding_share=1 - tokens / positions if positions else 0.0,
                        peak_memory_mb=peak, final_loss=loss)
    del session, next_batch, step
    gc.collect()  # the next side's model and AdamW state must not share the GPU with this one's
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _device_name(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads (torch {torch.__version__})"


def render_table(results: list[SideResult], header: str) -> str:
    base = results[0].tokens_per_second
    lines = [header, "",
             "| side | steps | step (ms, median) | tokens/step | tokens/s | vs lm_sample | compute tokens/s | padding | "
             "peak memory (MiB) | final loss |",
             "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        lines.append(f"| `{r.side}` | {r.steps} | {r.step_ms:.1f} | {r.tokens_per_step:,.0f} | {r.tokens_per_second:,.0f} | "
                     f"{r.tokens_per_second / base:.2f}x | {r.compute_tokens_per_second:,.0f} | {r.padding_share:.1%} | "
                     f"{r.peak_memory_mb:,.0f} | {r.final_loss:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:5]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--preset", default="tiny", choices=("tiny", "full"))
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--steps", type=int, default=20, help="timed steps per side")
    p.add_argument("--skip", type=int, default=3, help="untimed warm-up steps per side")
    p.add_argument("--tokens-per-chunk", type=int, default=4096, help="lm_chunked's chunk size (its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    p.add_argument("--data-dir", type=Path, default=None, help="shards to reuse (default: a fresh synthetic corpus)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    sides = ("lm_sample", "lm_sample --pack", "lm_chunked")
    with tempfile.TemporaryDirectory(prefix="lm-throughput-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        results = [measure(side, args, data_dir, Path(tmp) / side.replace(" --", "-")) for side in sides]
    header = (f"LM trainer throughput, preset `{args.preset}`, {args.dtype}, on {_device_name(args.device)}: "
              f"{args.steps} timed steps per side after {args.skip} untimed; lm_chunked at {args.tokens_per_chunk} "
              f"tokens per chunk.")
    print(render_table(results, header))
    print(f"\nReproduce: python benchmarks/lm_throughput.py --device {args.device} --preset {args.preset} "
          f"--dtype {args.dtype} --steps {args.steps} --skip {args.skip}")
    if args.json:
        args.json.write_text(json.dumps({"device": _device_name(args.device), "preset": args.preset, "dtype": args.dtype,
                                         "tokens_per_chunk": args.tokens_per_chunk,
                                         "results": [asdict(r) for r in results]}, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
