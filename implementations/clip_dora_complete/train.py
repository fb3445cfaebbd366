"""Command-line entry point of the complete CLIP+DoRA trainer (`python -m implementations.clip_dora_complete.train`).

Same flags and outputs as `reference.clip_dora.train`; only the checkpointer differs.
"""

from __future__ import annotations

import sys

from implementations.clip_dora_complete.checkpoint import CompleteCheckpointer
from reference.clip_dora.config import parse_config
from reference.clip_dora.loop import run_training


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print a one-line summary; 0 on success, 2 on bad usage (argparse)."""
    cfg = parse_config(argv, prog="python -m implementations.clip_dora_complete.train")
    summary = run_training(cfg, CompleteCheckpointer())
    print(f"[{summary['trainer']}] epoch {summary['last_epoch']} step {summary['global_step']} "
          f"stop={summary['stop_reason']} best_test_loss={summary['best_test_loss']:.6f} "
          f"wall={summary['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
