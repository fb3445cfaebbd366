"""Chunk-based next-token-prediction trainer (the seed's train_slimpajama.py): `python -m implementations.lm_chunked.train`.

    python -m implementations.lm_chunked.train --max-chunks 1000 --viz-interval 50
    python -m implementations.lm_chunked.train --max-chunks 1000 --tokens-per-chunk 4096 --viz-interval 25 \\
        --checkpoint-interval 1000
    python -m implementations.lm_chunked.train --test                 # 6 chunks, tiny preset, CPU is enough

Accumulates --tokens-per-chunk tokens of the packed document stream, reshapes them into rows of the
sequence length and takes one optimizer step on the whole chunk. With --tokens-per-chunk equal to the
sequence length it trains on exactly what `reference.lm_sample.train --pack` does, step for step.
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from reference.lm_sample.config import HelpFormatter, add_shared_options, apply_test_mode, config_from_args
from reference.lm_sample.data import Batch, packed_rows
from reference.lm_sample.metrics import TrainingMetrics
from reference.lm_sample.session import TrainingSession


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m implementations.lm_chunked.train", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:7]),
                                formatter_class=HelpFormatter)
    p.add_argument("--max-chunks", type=int, default=1000, help="chunks to train on, one optimizer step each")
    p.add_argument("--tokens-per-chunk", type=int, default=4096,
                   help="tokens accumulated before each step; a multiple of the preset's sequence length")
    add_shared_options(p)
    return p


class ChunkTrainer:
    """Accumulate a chunk of tokens, train on it in one step, log the step; the session does the monitoring."""

    def __init__(self, session: TrainingSession, tokens_per_chunk: int) -> None:
        if tokens_per_chunk < 1 or tokens_per_chunk % session.seq_len:
            raise ValueError(f"--tokens-per-chunk {tokens_per_chunk} is not a positive multiple of the "
                             f"{session.config.preset} preset's sequence length {session.seq_len}")
        self.session = session
        self.tokens_per_chunk = tokens_per_chunk
        self.losses: list[float] = []

    def accumulate_chunk(self) -> Batch:
        s = self.session
        return packed_rows(s.packer.take(self.tokens_per_chunk), s.seq_len)

    def train_on_chunk(self, chunk: Batch) -> tuple[float, float, torch.Tensor]:
        """One optimizer step on every row of the chunk; returns loss, accuracy and the predictions."""
        return self.session.train_on_batch(chunk)

    def _report(self, metrics: TrainingMetrics) -> None:
        self.losses.append(metrics.loss)
        average = sum(self.losses) / len(self.losses)
        tqdm.write(f"✅ Step {metrics.step + 1} complete in {metrics.step_seconds:.2f}s\n"
                   f"   Loss: {metrics.loss:.4f} | Accuracy: {metrics.accuracy:.1%} | Avg Loss: {average:.4f}\n"
                   f"   Throughput: {metrics.tokens_per_second:,.1f} tokens/sec | "
                   f"Total tokens: {metrics.total_tokens:,}")

    def train(self) -> int:
        """Train on the remaining chunks; returns the chunks completed (fewer after a fetch timeout)."""
        s = self.session
        for step in s.remaining_steps("chunks"):
            metrics = s.run_step(step, self.accumulate_chunk, self.train_on_chunk)
            if metrics is None:
                return step
            self._report(metrics)
        return s.config.last_step


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = apply_test_mode(parser, parser.parse_args(argv))
    try:
        config = config_from_args(args, total_steps=args.max_chunks, tokens_per_chunk=args.tokens_per_chunk)
        session = TrainingSession(config, say=tqdm.write)
        trainer = ChunkTrainer(session, args.tokens_per_chunk)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    print(f"Chunk-based training: {session.describe()} tokens_per_chunk={args.tokens_per_chunk}")
    try:
        done = trainer.train()
    finally:
        session.finish()
    print(f"✅ Done: {done} chunks, {session.total_tokens:,} tokens; charts and JSON in {config.viz_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
