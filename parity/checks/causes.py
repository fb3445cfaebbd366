"""Ranked causes: what changed between two runs, ordered by how directly it changes training.

A cause is an explanation backed by evidence from a check (model structure, data, labels, settings,
code). Causes are ranked by category; a cause that is the consequence of another (a bigger model
draws more random numbers at initialisation, so every random augmentation after it differs) names
its root in `consequence_of` and is listed after it, never as a cause of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Categories in rank order: what changes training most directly comes first.
CATEGORIES = (
    "model",          # module tree, parameter shapes/dtypes, frozen/unfrozen parameters
    "labels",         # same inputs, different targets (e.g. a re-encoded label vocabulary)
    "data_content",   # different samples (data prepared differently, a different split)
    "data_order",     # the same samples per epoch, in another order
    "augmentation",   # the same raw samples, different batches or model inputs (transforms, noise)
    "optimizer",      # optimizer class or hyperparameters
    "schedule",       # learning-rate schedule
    "clipping",       # gradient-clipping threshold
    "numerics",       # numerics flags, precision, deterministic algorithms
    "mode",           # dropout/batch-norm in eval mode during training
    "loop",           # loop order (zero_grad, accumulation, backward)
    "config",         # a setting that differs and may matter (training differs, not yet attributed)
    "code",           # source files/functions that changed
    "inert",          # settings that differ but cannot change training here (paths, output dirs)
    "unattributed",   # training differs and no recorded difference explains it
)


@dataclass
class Cause:
    """One ranked explanation of a difference, with the evidence that supports it."""

    category: str
    summary: str
    step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    consequence_of: str | None = None
    """The category of the root cause this one follows from (it is then not a cause of its own)."""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown cause category {self.category!r}")

    @property
    def rank(self) -> int:
        return CATEGORIES.index(self.category) + (len(CATEGORIES) if self.consequence_of else 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
