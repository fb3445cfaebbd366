"""Seeding and deterministic mode applied before the trainer starts (its own seeding runs after)."""

from __future__ import annotations

import os
import random
import warnings
from typing import Callable

import numpy as np
import torch

_DETERMINISTIC_MARKER = "does not have a deterministic implementation"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). PYTHONHASHSEED must be set by the launcher."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def enable_deterministic(on_nondeterministic_op: Callable[[str], None]) -> Callable[[], None]:
    """Deterministic kernels where they exist; warn (and report the op) where they do not.

    Returns the function that puts back what it changed, for a capture that ends while its process goes
    on (`parity.record` inside a program): torch's flags, cuDNN benchmarking, the warning hook, the variable.
    """
    had_workspace = "CUBLAS_WORKSPACE_CONFIG" in os.environ
    was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    original = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        text = str(message)
        if _DETERMINISTIC_MARKER in text:
            on_nondeterministic_op(text.split(" does not have")[0].strip())
        return original(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning

    def restore() -> None:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.benchmark = was[2]
        if warnings.showwarning is showwarning:  # not if someone installed their own hook since
            warnings.showwarning = original
        if not had_workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    return restore


def enable_strict_deterministic() -> None:
    """Deterministic kernels or an error: an op without a deterministic implementation raises, naming itself."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
