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


def record_toy_in_process(out: Path, script: str = "train.py", *args: str, seed: int = 0) -> Path:
    """Record the toy trainer `tests/toy/SCRIPT ARGS` inside this process, into `out`.

    For tests about what the checks make of a recording, not about the launcher: no trainer process starts
    (seconds of imports each). The script's trainer class runs through `train.main`, as its `__main__` does;
    sys.path and the toy modules are put back afterwards (a variant moves tests/toy to the front on import).
    """
    import importlib.util

    import parity

    path = TOY / script
    saved_path, saved_train = list(sys.path), sys.modules.pop("train", None)
    sys.path.insert(0, str(TOY))
    try:
        import train

        trainer_cls = train.Trainer
        if path != TOY / "train.py":
            spec = importlib.util.spec_from_file_location(f"toy_variant_{path.stem}", path)
            variant = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(variant)
            trainer_cls = next(v for v in vars(variant).values()
                               if isinstance(v, type) and issubclass(v, train.Trainer) and v is not train.Trainer)
        with parity.record(out, seed=seed):
            train.main(["--ckpt-dir", str(out / "ckpt"), *args], trainer_cls=trainer_cls)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("train", None)
        if saved_train is not None:
            sys.modules["train"] = saved_train
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
