"""Run metadata: versions, device, numerics flags, relevant environment and the trainer's git state."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

#: Environment variables that can change numerics, placement or seeding.
NUMERICS_ENV = (
    "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE", "TORCH_CUDNN_V8_API_ENABLED", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "CUDA_LAUNCH_BLOCKING",
    "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NCCL_ALGO", "NCCL_PROTO",
    "PARITY_SEED", "PARITY_DETERMINISTIC", "PARITY_LEVEL", "PARITY_SKIP_LOADS",
)


def numerics_flags() -> dict[str, Any]:
    """Flags that decide which kernels run and how precisely; read now (the trainer may change them)."""
    flags: dict[str, Any] = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "num_threads": torch.get_num_threads(),
        "cudnn.enabled": torch.backends.cudnn.enabled,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cuda.matmul.allow_fp16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        "cuda.matmul.allow_bf16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
    }
    return flags


def _git_state(start: Path) -> dict[str, Any] | None:
    try:
        import git
    except ImportError:  # gitpython is a dependency, but capture must not die without it
        return None
    try:
        repo = git.Repo(start, search_parent_directories=True)
        return {"root": str(repo.working_tree_dir), "commit": repo.head.commit.hexsha,
                "dirty": repo.is_dirty(untracked_files=False)}
    except Exception:  # not a repository, or an empty one with no commit yet
        return None


def _trainer_location() -> Path:
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    path = Path(script).resolve().parent if script and Path(script).exists() else Path.cwd()
    return path


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
        "git": _git_state(_trainer_location()),
    }
