"""AFTER trainer of seed 004 (`python -m implementations.hf_sft_optimized.train`): the seed's optimised arguments.

Same flags as `reference.hf_sft.train`; only the defaults of the seed's changed arguments differ (`AFTER`).
"""

from __future__ import annotations

import sys
from typing import Any

from reference.hf_sft.train import BEFORE, run

AFTER: dict[str, Any] = {
    **BEFORE,
    "gradient_accumulation_steps": 4,
    "max_seq_length": 1536,
    "tf32": True,                 # passed through on an Ampere+ GPU; left unset on CPU (see guard_for_device)
    "dataloader_num_workers": 4,
    "dataloader_pin_memory": True,
    "dataloader_prefetch_factor": 4,
    "gradient_checkpointing": True,
}
"""The seed's AFTER values of the arguments it changes."""


def main(argv: list[str] | None = None) -> int:
    return run(argv, AFTER, prog="python -m implementations.hf_sft_optimized.train")


if __name__ == "__main__":
    sys.exit(main())
