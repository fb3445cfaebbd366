"""Run metadata: versions, device, numerics flags, relevant environment and the trainer's git state."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from parity.capture.config import NUMERICS_ENV


def cuda_in_use() -> bool:
    """CUDA is initialised in this process (asking never initialises it)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()

#: Numerics flags by name, each read by its own function: torch refuses to read some (the legacy TF32
#: flags once a trainer set the new `fp32_precision` API), and one unreadable flag must not lose the others.
_NUMERICS_FLAGS: dict[str, Any] = {
    "deterministic_algorithms": lambda: torch.are_deterministic_algorithms_enabled(),
    "deterministic_warn_only": lambda: torch.is_deterministic_algorithms_warn_only_enabled(),
    "float32_matmul_precision": lambda: torch.get_float32_matmul_precision(),
    "num_threads": lambda: torch.get_num_threads(),
    "cudnn.enabled": lambda: torch.backends.cudnn.enabled,
    "cudnn.benchmark": lambda: torch.backends.cudnn.benchmark,
    "cudnn.deterministic": lambda: torch.backends.cudnn.deterministic,
    "cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
    "cuda.matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
    "cuda.matmul.allow_fp16_reduced_precision_reduction":
        lambda: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
    "cuda.matmul.allow_bf16_reduced_precision_reduction":
        lambda: torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
    # The newer per-backend precision API (torch >= 2.9): "ieee", "tf32", "bf16" or "none".
    "cuda.matmul.fp32_precision": lambda: torch.backends.cuda.matmul.fp32_precision,
    "cudnn.conv.fp32_precision": lambda: torch.backends.cudnn.conv.fp32_precision,
}


def numerics_flags() -> dict[str, Any]:
    """Flags that decide which kernels run and how precisely; read now (the trainer may change them).

    A flag this torch does not have is left out; one it refuses to read is recorded as "unreadable: why"."""
    flags: dict[str, Any] = {}
    for name, read in _NUMERICS_FLAGS.items():
        try:
            flags[name] = read()
        except AttributeError:
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. RuntimeError for legacy TF32 flags after the new API
            flags[name] = f"unreadable: {str(exc).splitlines()[0][:120]}"
    return flags


def _git_state(start: Path) -> dict[str, Any] | None:
    """{root, commit, dirty} of the git repository holding `start`, or None outside git."""
    try:
        import git
    except ImportError:  # gitpython is a dependency, but capture must not die without it
        return None
    try:
        repo = git.Repo(start, search_parent_directories=True)
        return {"root": str(repo.working_tree_dir), "commit": repo.head.commit.hexsha,
                "dirty": repo.is_dirty(untracked_files=False)}
    except Exception:  # not a repository, or an empty one with no commit yet  # noqa: BLE001
        return None


def _trainer_location() -> Path:
    """Directory of the trainer's own source: `__main__`'s file, else the script in argv[0], else the cwd.

    `python -m pkg.mod` sets neither `__main__.__file__` nor argv[0] before `sitecustomize` runs (argv[0]
    is then "-m"), so at capture start such a run falls back on the cwd; called later, it finds the module.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    for candidate in (getattr(spec, "origin", None), getattr(main, "__file__", None), script):
        if isinstance(candidate, str) and os.path.isfile(candidate):
            return Path(candidate).resolve().parent
    return Path.cwd()


def trainer_git_state(start: Path | None = None) -> dict[str, Any] | None:
    """Git {root, commit, dirty} of the repository the trainer's source lives in, or None outside git.

    The trainer's source is found as `_trainer_location` says, unless `start` names it. Reads the
    process state and the repository, changes neither; safe to call at any time after capture starts,
    and more precise once `__main__` runs (the `-m` case).
    """
    return _git_state(start if start is not None else _trainer_location())


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages of the machine, or None where the platform has none (Windows)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


#: Header keys of the facts that bitwise results depend on beyond versions (golden environment ids use them).
META_MACHINE = "machine"
META_CPU_CAPABILITY = "cpu_capability"
META_CUDNN = "cudnn"


def environment_facts() -> dict[str, Any]:
    """CPU architecture, the vector capability torch dispatches CPU kernels to, and the cuDNN version."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {META_MACHINE: platform.machine(), META_CPU_CAPABILITY: torch.backends.cpu.get_cpu_capability(),
            META_CUDNN: cudnn}


def run_metadata() -> dict[str, Any]:
    """Everything known about the process when capture starts."""
    device = "cpu"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return {
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "numerics": numerics_flags(),
        "env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
        "git": trainer_git_state(),
        # Step times of two runs mean little when the machine was busy; the report says so from these.
        "load": load_average(),
        "cpus": os.cpu_count(),
        **environment_facts(),
    }
