"""The seed's three-file checkpoint set, and the loader that resumes from one.

    <output>/checkpoints/checkpoint_step_N.bin             transformer blocks + training state (optimizer,
                                                            schedule, step, data position, RNG, config)
    <output>/checkpoints/checkpoint_step_N.bin.embeddings  token and position embeddings
    <output>/checkpoints/checkpoint_step_N.bin.decoder     final norm and output projection

N counts completed steps. Each file is written under a temporary name and renamed into place, the
main `.bin` last, so a set whose `.bin` exists is complete. The loader refuses a set with a file
missing, naming it, rather than resuming half a model.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference.lm_sample.model import DecoderLM

CHECKPOINT_TEMPLATE = "checkpoint_step_{step}.bin"
#: Suffixes of the two companion files, appended to the main file's name.
PART_SUFFIXES = (".embeddings", ".decoder")


class CheckpointError(RuntimeError):
    """A checkpoint set that cannot be resumed from (a file missing or unreadable)."""


@dataclass
class ResumeState:
    """What a loaded checkpoint tells the trainer besides the weights."""

    step: int
    """Steps completed: the resumed run's first step index."""
    data: dict[str, Any]
    """Data position: documents consumed, and the packer's left-over tokens where there is one."""
    total_tokens: int


def checkpoint_files(main: Path) -> tuple[Path, Path, Path]:
    """The three paths of the set whose main file is `main`."""
    return (main, *(main.with_name(main.name + suffix) for suffix in PART_SUFFIXES))  # type: ignore[return-value]


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, step: int, model: DecoderLM, optimizer: torch.optim.Optimizer,
                    scheduler: Any, data: dict[str, Any], total_tokens: int, config: dict[str, Any]) -> Path:
    """Write checkpoint_step_<step>.bin and its two companions into `directory`; returns the main file."""
    directory.mkdir(parents=True, exist_ok=True)
    main, embeddings, decoder = checkpoint_files(directory / CHECKPOINT_TEMPLATE.format(step=step))
    _save(model.embeddings.state_dict(), embeddings)
    _save(model.decoder.state_dict(), decoder)
    _save({"blocks": model.blocks.state_dict(), "optimizer": optimizer.state_dict(),
           "scheduler": scheduler.state_dict(), "step": step, "data": data, "total_tokens": total_tokens,
           "rng": _rng_state(), "config": config}, main)
    return main


def load_checkpoint(main: Path, model: DecoderLM, optimizer: torch.optim.Optimizer, scheduler: Any,
                    device: torch.device) -> ResumeState:
    """Load a set written by `save_checkpoint` into the model, optimizer and schedule; restores the RNGs."""
    files = checkpoint_files(Path(main))
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise CheckpointError(f"{main}: incomplete checkpoint set, missing {', '.join(missing)}")
    try:
        # weights_only=False: the main file holds Python's and NumPy's RNG states (tuples, arrays);
        # these files are the trainer's own, never downloaded ones.
        state = torch.load(files[0], map_location=device, weights_only=False)
        model.embeddings.load_state_dict(torch.load(files[1], map_location=device, weights_only=True))
        model.decoder.load_state_dict(torch.load(files[2], map_location=device, weights_only=True))
        model.blocks.load_state_dict(state["blocks"])
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise CheckpointError(f"{main}: cannot load checkpoint set: {exc}") from exc
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return ResumeState(step=int(state["step"]), data=dict(state["data"]), total_tokens=int(state["total_tokens"]))
