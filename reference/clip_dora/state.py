"""Mutable training state shared by the loop and the checkpointers, and the checkpointer seam.

The loop owns *when* to save and restore; a `Checkpointer` owns *what* goes into
the file. The two trainers of the pair differ only in their checkpointer, which
is what makes their resume behaviour comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from reference.clip_dora.config import TrainConfig


class EarlyStopping:
    """Patience counter on the test loss; improvement means strictly lower than the best so far.

    It never looks at training loss and never stops training itself: the loop asks
    `should_stop` after each epoch.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_test_loss = math.inf
        self.epochs_no_improve = 0

    def update(self, test_loss: float) -> bool:
        """Record one epoch's test loss; return whether it improved on the best."""
        # NaN compares False, so a diverged run counts as "no improvement" and stops.
        if test_loss < self.best_test_loss:
            self.best_test_loss = test_loss
            self.epochs_no_improve = 0
            return True
        self.epochs_no_improve += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once `patience` consecutive epochs have failed to improve."""
        return self.epochs_no_improve >= self.patience

    def state_dict(self) -> dict:
        """The two numbers the checkpoint spec lists as early-stopping state."""
        return {"best_test_loss": float(self.best_test_loss), "epochs_no_improve": int(self.epochs_no_improve)}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()` output; patience stays as configured for this run."""
        self.best_test_loss = float(state["best_test_loss"])
        self.epochs_no_improve = int(state["epochs_no_improve"])


@dataclass
class TrainState:
    """Everything a checkpointer may save or restore, built fresh by the loop before any resume."""

    cfg: TrainConfig
    """The invocation's configuration (of this run, not of the run that wrote the checkpoint)."""
    model: torch.nn.Module
    """The DoRA-wrapped model; only its trainable tensors differ between runs."""
    optimizer: torch.optim.Optimizer
    """A fresh AdamW over the DoRA tensors; a checkpointer may load saved moments into it."""
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    """Per-step LR scheduler, or None with `--scheduler none`."""
    early_stopping: EarlyStopping
    """Fresh patience counter; a checkpointer may load saved counts into it."""
    steps_per_epoch: int
    """Optimizer steps in one epoch; fixed by the preset, so global steps follow from epochs."""
    epoch: int = 0
    """Last fully completed epoch (0 before training)."""
    global_step: int = 0
    """Optimizer steps taken so far across all epochs, resumed runs included."""
    notes: dict = field(default_factory=dict)
    """Checkpointer remarks on what a restore did, copied into final.json."""


class Checkpointer(Protocol):
    """What a trainer saves after an epoch and how it resumes; chosen once per trainer."""

    name: str
    """Trainer label written into losses.jsonl and final.json ('reference' or 'complete')."""

    def save(self, state: TrainState, path: Path) -> None:
        """Write a checkpoint for `state.epoch` to `path` with torch.save of plain types only."""

    def restore(self, state: TrainState, path: Path) -> None:
        """Load `path` into the freshly built `state`, setting at least `state.epoch`."""


def checkpoint_path(out: Path, epoch: int) -> Path:
    """Where the checkpoint written after `epoch` lives."""
    return out / f"ckpt_epoch{epoch}.pt"
