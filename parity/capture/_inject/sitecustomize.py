"""Injected by `parity record` through PYTHONPATH: starts capture in every Python process it launches.

It chains to any other sitecustomize on the path, so the user's environment behaves as before.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _chain_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get("PARITY_RECORD_DIR"):
    try:
        from parity.capture.runtime import start_from_environment

        start_from_environment()
    except Exception as _exc:  # noqa: BLE001 -- a broken capture must say so, not kill the trainer
        sys.stderr.write(f"parity: capture could not start in pid {os.getpid()}: {type(_exc).__name__}: {_exc}\n")
_chain_next_sitecustomize()
