"""Full training-state checkpoints for exact resume (seed change 12, made exact).

The seed's resume reloaded the best weights and guessed the step from metrics.jsonl.
Here ``checkpoint.pt`` holds everything the next step reads: model, optimizer,
schedulers, GradScaler, the step to run next, the eval history (upstream's checkpoint
rule compares against it) and the CPU/CUDA/numpy/Python RNG states. Resuming in a
fresh process then continues the same random stream, so a stopped-and-resumed CPU run
matches an uninterrupted one bit for bit when DataLoader workers are off (worker
processes keep RNG state this file cannot capture).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _state_or_none(obj):
    return obj.state_dict() if obj is not None else None


def save_checkpoint(path: str, *, next_step: int, model, optimizer, scheduler, plateau, scaler, recorder, skipped: int) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves a torn file."""
    state = {
        "format_version": FORMAT_VERSION,
        "next_step": next_step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": _state_or_none(scheduler),
        "plateau": _state_or_none(plateau),
        "scaler": _state_or_none(scaler),
        "test_loss": list(recorder.test_loss),
        "test_cer": list(recorder.test_cer),
        "skipped": skipped,
        "rng": _rng_state(),
    }
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, *, model, optimizer, scheduler, plateau, scaler, recorder, device: str) -> dict:
    """Restore every piece in place; returns {"next_step", "skipped"}. RNG is restored last.

    Restoring RNG last matters: building the model and loaders before this call
    consumed random numbers that the interrupted run had consumed too, and the saved
    state already reflects them.
    """
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: wrong checkpoint format: {state.get('format_version')} instead of {FORMAT_VERSION}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for obj, key in ((scheduler, "scheduler"), (plateau, "plateau"), (scaler, "scaler")):
        if (obj is None) != (state[key] is None):
            raise ValueError(f"{path}: checkpoint has {key} state {'but' if obj is None else 'missing;'} this run's settings differ")
        if obj is not None:
            obj.load_state_dict(state[key])
    recorder.test_loss = list(state["test_loss"])
    recorder.test_cer = list(state["test_cer"])
    _restore_rng(state["rng"])
    return {"next_step": state["next_step"], "skipped": state["skipped"]}


def default_checkpoint_path(output_dir: str) -> str:
    return os.path.join(output_dir, CHECKPOINT_NAME)
