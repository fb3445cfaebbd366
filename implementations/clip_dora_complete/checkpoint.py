"""The complete checkpoint: the reference's DoRA parameters and RNG states plus all remaining training state.

Added over the reference (items 3-5 of the spec's list, plus metadata):
optimizer moments and step counts, early-stopping counters, scheduler state when
a scheduler is used, the epoch and global step, and the run's arguments. A
timestamp is deliberately left out so that two runs writing the same epoch write
byte-comparable state.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reference.clip_dora.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state
from reference.clip_dora.model import load_trainable_state, trainable_state
from reference.clip_dora.state import TrainState

FORMAT_VERSION = 1
"""Bumped when keys change. 1: first complete format (dora, rng, optimizer, early stopping, scheduler, epoch)."""

_MUST_MATCH = ("preset", "seed")
"""Args that rebuild the frozen model and data; resuming under different values would load adapters onto another model."""


def _check_compatible(path: Path, saved_args: dict, state: TrainState) -> None:
    """Refuse a resume whose rebuilt model or schedule could not match the saved one."""
    current = state.cfg.to_metadata()
    for key in _MUST_MATCH:
        if saved_args[key] != current[key]:
            raise ValueError(f"{path}: checkpoint has {key}={saved_args[key]!r} but this run has "
                             f"--{key} {current[key]!r}; pass the original --{key}")
    if saved_args["scheduler"] != current["scheduler"]:
        raise ValueError(f"{path}: checkpoint was trained with --scheduler {saved_args['scheduler']}, "
                         f"this run asks for --scheduler {current['scheduler']}; pass the original value")


class CompleteCheckpointer:
    """Saves and restores every piece of state that influences later steps.

    Restore order is params, optimizer, scheduler, early stopping, counters, and RNG
    last, so nothing that runs during restore can advance a stream after it is set.
    It never changes hyperparameters of the current run: lr, betas and weight decay
    come back from the saved optimizer state, as in a continuous run.
    """

    name = "complete"

    def save(self, state: TrainState, path: Path) -> None:
        checkpoint = {
            "dora_parameters": trainable_state(state.model),
            "rng_state": capture_rng_state(),
            "optimizer_state": state.optimizer.state_dict(),
            "early_stopping_state": state.early_stopping.state_dict(),
            "epoch": state.epoch,
            "global_step": state.global_step,
            "metadata": {
                "format_version": FORMAT_VERSION,
                "trainer": self.name,
                "args": state.cfg.to_metadata(),
                "steps_per_epoch": state.steps_per_epoch,
                "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-loadable
            },
        }
        # Present only when a scheduler runs, mirroring the spec's "(if using one)".
        if state.scheduler is not None:
            checkpoint["scheduler_state"] = state.scheduler.state_dict()
        torch.save(checkpoint, path)

    def restore(self, state: TrainState, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        if "metadata" not in checkpoint:
            raise ValueError(f"{path}: not a complete checkpoint (keys {sorted(checkpoint)}); "
                             "resume it with reference.clip_dora.train instead")
        metadata = checkpoint["metadata"]
        if metadata["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{path}: wrong checkpoint format: {metadata['format_version']} "
                             f"instead of {FORMAT_VERSION}")
        _check_compatible(path, metadata["args"], state)
        load_trainable_state(state.model, checkpoint["dora_parameters"])
        # load_state_dict moves the moments onto each parameter's device, so a CPU-mapped file is fine.
        state.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if state.scheduler is not None:
            state.scheduler.load_state_dict(checkpoint["scheduler_state"])
            if metadata["args"]["epochs"] != state.cfg.epochs:
                # The saved T_max wins: the schedule continues as originally planned.
                state.notes["scheduler_kept_original_epochs"] = metadata["args"]["epochs"]
        state.early_stopping.load_state_dict(checkpoint["early_stopping_state"])
        state.epoch = int(checkpoint["epoch"])
        if checkpoint["global_step"] != state.epoch * state.steps_per_epoch:
            raise ValueError(f"{path}: global_step {checkpoint['global_step']} does not match epoch "
                             f"{state.epoch} x {state.steps_per_epoch} steps; was the preset changed?")
        restore_rng_state(checkpoint["rng_state"])
        state.notes["restored"] = sorted(key for key in checkpoint if key != "metadata")
