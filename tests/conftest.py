"""Shared fixtures: every test must leave torch exactly as it found it (capture patches removed)."""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: every trainer the suite starts (and inherits this) runs tiny
# ops on two threads, and GNU OpenMP's default busy-wait after each parallel region tripled their CPU time
# on two shared cores (toy trainer, 200 steps: 14 s -> 5.5 s of CPU) without changing a bit of the results
# (the thread count, which results depend on, is left as it is). Set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TOY = REPO / "tests" / "toy"
#: Where `pytest parity/` records the bundled pairs (its default --parity-runs-dir): a pair side recorded
#: through this folder's run cache is recorded once, whether a test or a gate item needs it first.
PAIR_RUNS = REPO / "runs" / "pytest"


def record_pair_side(side, out: Path, steps: int) -> Path:
    """Record one side of a bundled pair into `out` through the run cache `pytest parity/` uses."""
    from parity.sides import record_side

    record_side(side, out, steps=steps, device="cpu", cache_dir=PAIR_RUNS / ".cache", label=out.name)
    return out


_PATCHED = [
    (torch.optim.Optimizer, "__init__"), (torch.optim.Optimizer, "zero_grad"), (torch.optim.Optimizer, "load_state_dict"),
    (torch.nn.Module, "zero_grad"), (torch.nn.Module, "train"), (torch.Tensor, "backward"), (torch.autograd, "backward"),
    (torch.nn.utils, "clip_grad_norm_"), (torch.optim.lr_scheduler.LRScheduler, "step"),
    (torch.optim.lr_scheduler.LRScheduler, "__init__"), (torch.amp.GradScaler, "scale"), (torch.amp.GradScaler, "step"),
    (torch, "save"), (torch, "set_rng_state"), (np.random, "set_state"), (random, "setstate"),
    (argparse.ArgumentParser, "parse_known_args"),
]


def _snapshot() -> list[object]:
    return [getattr(owner, name) for owner, name in _PATCHED]


@pytest.fixture(autouse=True)
def torch_left_unpatched():
    """Capture hooks and wrappers are gone after each test, even a failing one."""
    before = _snapshot()
    yield
    from parity.capture import runtime

    leaked = runtime._active
    if leaked is not None:
        leaked.stop()
    after = _snapshot()
    changed = [f"{owner.__name__}.{name}" for (owner, name), a, b in zip(_PATCHED, before, after) if a is not b]
    assert leaked is None, "a capture was left running"
    assert not changed, f"capture left patches installed: {changed}"


@pytest.fixture
def parity_cmd() -> list[str]:
    return [sys.executable, "-m", "parity"]
