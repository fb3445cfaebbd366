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


def enable_deterministic(on_nondeterministic_op: Callable[[str], None]) -> None:
    """Deterministic kernels where they exist; warn (and report the op) where they do not."""
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


def enable_strict_deterministic() -> None:
    """Deterministic kernels or an error: an op without a deterministic implementation raises, naming itself."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
