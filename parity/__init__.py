"""parity: differential testing for PyTorch training code.

Public API: ``parity.record(dir)`` (context manager that records the steps run inside it),
``parity.load_run``, ``parity.compare`` and the ``parity`` command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["record", "load_run", "compare", "__version__"]


def __getattr__(name: str):  # lazy: importing parity must not import torch (the CLI and readers stay light)
    if name == "record":
        from parity.capture.runtime import record
        return record
    if name == "load_run":
        from parity.trace.reader import load_run
        return load_run
    if name == "compare":
        from parity.session import compare
        return compare
    raise AttributeError(name)
