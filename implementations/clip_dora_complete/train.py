"""Command-line entry point of the complete CLIP+DoRA trainer (`python -m implementations.clip_dora_complete.train`).

Same flags and outputs as `reference.clip_dora.train`; only the checkpointer differs.
"""

from __future__ import annotations

import sys

from implementations.clip_dora_complete.checkpoint import CompleteCheckpointer
from reference.clip_dora.config import parse_config
from reference.clip_dora.loop import run_training


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print a one-line summary; 0 on success, 2 on bad usage or an unusable checkpoint."""
    cfg = parse_config(argv, prog="python -m implementations.clip_dora_complete.train",
                       description="CLIP+DoRA trainer; checkpoints hold the complete training state.")
    try:
        summary = run_training(cfg, CompleteCheckpointer())
    except (ValueError, KeyError) as exc:
        # Raised by checkpoint restore for a file this trainer cannot resume from.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[{summary['trainer']}] epoch {summary['last_epoch']} step {summary['global_step']} "
          f"stop={summary['stop_reason']} best_test_loss={summary['best_test_loss']:.6f} "
          f"wall={summary['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
