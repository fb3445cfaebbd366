"""Sample-by-sample next-token-prediction trainer (the seed's train_advanced.py): `python -m reference.lm_sample.train`.

    python -m reference.lm_sample.train --steps 10000 --viz-interval 50
    python -m reference.lm_sample.train --steps 10000 --viz-interval 25 --checkpoint-interval 1000
    python -m reference.lm_sample.train --test                      # 10 steps, tiny preset, CPU is enough
    python -m reference.lm_sample.train --resume out/checkpoints/checkpoint_step_2000.bin --steps 4000

Each step trains on one document from the stream, cut or padded to the sequence length. With
--pack it takes the next sequence-length tokens of the packed stream instead, which is what the chunk
trainer sees with --tokens-per-chunk equal to the sequence length: the two then train on the same tokens.
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from reference.lm_sample.config import HelpFormatter, add_shared_options, apply_test_mode, config_from_args
from reference.lm_sample.data import Batch, document_sample, packed_rows
from reference.lm_sample.session import TrainingSession


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reference.lm_sample.train", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:6]),
                                formatter_class=HelpFormatter)
    p.add_argument("--steps", type=int, default=10000, help="training steps, one document each")
    p.add_argument("--pack", action="store_true",
                   help="train on packed token sequences instead of one padded document per step")
    add_shared_options(p)
    return p


class SampleTrainer:
    """One document (or one packed sequence) per optimizer step, with tqdm progress and the session's monitoring."""

    def __init__(self, session: TrainingSession, pack: bool = False) -> None:
        self.session = session
        self.pack = pack

    def next_sample(self) -> Batch:
        s = self.session
        if self.pack:
            return packed_rows(s.packer.take(s.seq_len), s.seq_len)
        return document_sample(next(s.stream), s.tokenizer, s.seq_len)

    def train_step(self, batch: Batch) -> tuple[float, float, torch.Tensor]:
        return self.session.train_on_batch(batch)

    def train(self) -> int:
        """Run the remaining steps; returns the number of steps completed (less than asked after a fetch timeout)."""
        s = self.session
        progress = s.remaining_steps("training")
        for step in progress:
            metrics = s.run_step(step, self.next_sample, self.train_step)
            if metrics is None:
                return step
            progress.set_postfix(loss=f"{metrics.loss:.4f}", acc=f"{metrics.accuracy:.1%}",
                                 tok_s=f"{metrics.tokens_per_second:,.0f}")
        return s.config.last_step


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = apply_test_mode(parser, parser.parse_args(argv))
    try:
        config = config_from_args(args, total_steps=args.steps, pack=args.pack)
        session = TrainingSession(config, say=tqdm.write)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    print(f"Sample-by-sample training: {session.describe()} pack={args.pack}")
    try:
        done = SampleTrainer(session, pack=args.pack).train()
    finally:
        session.finish()
    history = session.history.steps
    if history:
        print(f"✅ Done: {done} steps, final loss {history[-1].loss:.4f}, accuracy {history[-1].accuracy:.1%}, "
              f"{session.total_tokens:,} tokens; charts and JSON in {config.viz_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
