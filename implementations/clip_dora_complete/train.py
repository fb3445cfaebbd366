"""Command-line entry point of the complete CLIP+DoRA trainer (`python -m implementations.clip_dora_complete.train`).

Same flags and outputs as `reference.clip_dora.train`; only the checkpointer differs.
"""

from __future__ import annotations

import sys

from implementations.clip_dora_complete.checkpoint import CompleteCheckpointer
from reference.clip_dora.train import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, CompleteCheckpointer(), prog="python -m implementations.clip_dora_complete.train",
                   description="CLIP+DoRA trainer; checkpoints hold the complete training state.")


if __name__ == "__main__":
    sys.exit(main())
