"""The reference checkpoint: DoRA parameters and RNG states, and nothing else.

This is the "currently saved" list of the checkpoint-spec analysis. Resuming from
it restores the adapters and the RNG streams but leaves the loop's fresh AdamW
(zero moments, step 0), fresh early stopping (best = inf, count = 0) and fresh
scheduler in place, so the resumed run departs from a continuous one at the first
optimizer step after the resume point.

RNG states are converted to tensors, ints, floats, strings and lists so the file
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from reference.clip_dora.model import load_trainable_state, trainable_state
from reference.clip_dora.state import TrainState

_EPOCH_IN_NAME = re.compile(r"ckpt_epoch(\d+)\.pt$")
"""The reference checkpoint stores no epoch, so resume reads it from the file name."""


def capture_rng_state() -> dict:
    """Snapshot the torch, numpy, python and (when present) CUDA RNG streams as plain types."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    py_version, py_internal, py_gauss_next = random.getstate()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "torch_rng_state": torch.get_rng_state(),
        "numpy_rng_state": {
            "bit_generator": str(np_name),
            # uint32 keys held in int64 because torch has no uint32 tensors that all versions pickle.
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python_rng_state": {
            "version": int(py_version),
            "internal": list(py_internal),
            "gauss_next": None if py_gauss_next is None else float(py_gauss_next),
        },
        "cuda_rng_state_all": list(cuda_states),
    }


def restore_rng_state(rng: dict) -> None:
    """Inverse of `capture_rng_state`; CUDA states are skipped when this process has no GPU."""
    torch.set_rng_state(rng["torch_rng_state"])
    np_state = rng["numpy_rng_state"]
    np.random.set_state((
        np_state["bit_generator"],
        np_state["keys"].numpy().astype(np.uint32),
        np_state["pos"],
        np_state["has_gauss"],
        np_state["cached_gaussian"],
    ))
    py_state = rng["python_rng_state"]
    random.setstate((py_state["version"], tuple(py_state["internal"]), py_state["gauss_next"]))
    cuda_states = rng["cuda_rng_state_all"]
    # A CPU resume of a GPU checkpoint cannot restore CUDA streams; nothing on CPU reads them.
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)


def load_checkpoint(path: Path) -> dict:
    """Read any checkpoint of the pair, refusing pickled objects beyond plain types.

    Raises ValueError for a missing, truncated or foreign file, so `main()` can
    report it as bad input rather than a crash.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: unreadable checkpoint: {reason}") from exc
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, found {type(checkpoint).__name__}")
    return checkpoint


def epoch_from_filename(path: Path) -> int:
    """The epoch encoded in a `ckpt_epoch{E}.pt` name."""
    match = _EPOCH_IN_NAME.search(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: --resume needs a file named ckpt_epoch<E>.pt; "
                         "the reference checkpoint does not record its epoch")
    return int(match.group(1))


class ReferenceCheckpointer:
    """Saves DoRA parameters plus RNG states; restores exactly those.

    It never touches the optimizer, the scheduler or early stopping, on save or on
    restore: that omission is the behaviour under test.
    """

    name = "reference"

    def save(self, state: TrainState, path: Path) -> None:
        torch.save({
            "dora_parameters": trainable_state(state.model),
            "rng_state": capture_rng_state(),
        }, path)

    def restore(self, state: TrainState, path: Path) -> None:
        epoch = epoch_from_filename(path)  # checked first: a misnamed file fails before any I/O
        checkpoint = load_checkpoint(path)
        load_trainable_state(state.model, checkpoint["dora_parameters"])
        restore_rng_state(checkpoint["rng_state"])
        state.epoch = epoch
        state.notes["restored"] = ["dora_parameters", "rng_state"]
        state.notes["reset_on_resume"] = ["optimizer", "early_stopping", "scheduler"]
