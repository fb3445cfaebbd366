"""Negative controls for resume checks: make a resumed run behave as if its checkpoint lacked one kind
of state, by turning that state's restore call into a no-op. The trainer is not edited."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

#: Kinds of state a control can drop, with a sentence for reports.
CONTROL_KINDS = {
    "optimizer": "Optimizer.load_state_dict skipped (optimizer moments and step counters)",
    "scheduler": "LRScheduler.load_state_dict skipped (scheduler position)",
    "grad_scaler": "GradScaler.load_state_dict skipped (loss scale and growth tracker)",
    "rng_torch": "torch.set_rng_state skipped (CPU generator)",
    "rng_cuda": "torch.cuda.set_rng_state(_all) skipped (CUDA generators)",
    "rng_numpy": "numpy.random.set_state skipped",
    "rng_python": "random.setstate skipped",
}

#: The RNG restore functions each control replaces, as (owner, attribute).
_RNG_TARGETS: dict[str, list[tuple[Any, str]]] = {
    "rng_torch": [(torch, "set_rng_state"), (torch.random, "set_rng_state")],
    "rng_cuda": [(torch.cuda, "set_rng_state"), (torch.cuda, "set_rng_state_all")],
    "rng_numpy": [(np.random, "set_state")],
    "rng_python": [(random, "setstate")],
}


def rng_restore_targets(kinds: frozenset[str]) -> list[tuple[Any, str, str]]:
    """(owner, attribute, kind) for every RNG restore function that the given controls turn off."""
    return [(owner, name, kind) for kind in sorted(kinds) for owner, name in _RNG_TARGETS.get(kind, [])]
