"""Command-line entry point of the reference CLIP+DoRA trainer (`python -m reference.clip_dora.train`)."""

from __future__ import annotations

import sys

from reference.clip_dora.checkpoint import ReferenceCheckpointer
from reference.clip_dora.config import parse_config
from reference.clip_dora.loop import run_training


def run_cli(argv: list[str] | None, checkpointer, prog: str, description: str) -> int:  # type: ignore[no-untyped-def]
    """Parse flags, train, print a one-line summary; 0 on success, 2 on bad usage or an unusable checkpoint.

    Shared by both trainers of the pair: they differ only in the checkpointer."""
    cfg = parse_config(argv, prog=prog, description=description)
    try:
        summary = run_training(cfg, checkpointer)
    except (ValueError, KeyError) as exc:
        # Raised by checkpoint restore for a file this trainer cannot resume from.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[{summary['trainer']}] epoch {summary['last_epoch']} step {summary['global_step']} "
          f"stop={summary['stop_reason']} best_test_loss={summary['best_test_loss']:.6f} "
          f"wall={summary['wall_s']}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, ReferenceCheckpointer(), prog="python -m reference.clip_dora.train",
                   description="CLIP+DoRA trainer; checkpoints hold DoRA parameters and RNG states only.")


if __name__ == "__main__":
    sys.exit(main())
