"""What to capture, parsed once from flags or the environment of an injected process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from parity.exceptions import ConfigError
from parity.trace import schema

# $set_env.py: PARITY_RECORD_DIR -- run directory; its presence turns capture on in injected processes.
ENV_DIR = "PARITY_RECORD_DIR"
# $set_env.py: PARITY_LEVEL -- capture level (full | every:N | minimal).
ENV_LEVEL = "PARITY_LEVEL"
# $set_env.py: PARITY_SEED -- seed applied before the trainer starts (unset: no seeding).
ENV_SEED = "PARITY_SEED"
# $set_env.py: PARITY_DETERMINISTIC -- "1" turns on torch deterministic algorithms (warn-only).
ENV_DETERMINISTIC = "PARITY_DETERMINISTIC"
# $set_env.py: PARITY_SKIP_LOADS -- comma list of state kinds whose load_state_dict/RNG restore is skipped.
ENV_SKIP_LOADS = "PARITY_SKIP_LOADS"
# $set_env.py: PARITY_DEEP_STEP -- step whose modules and ATen ops deep capture records (unset: no deep capture).
ENV_DEEP_STEP = "PARITY_DEEP_STEP"
# $set_env.py: PARITY_DEEP_EXIT -- "1": the process exits as soon as the deep-captured step is written.
ENV_DEEP_EXIT = "PARITY_DEEP_EXIT"
# $set_env.py: PARITY_STRICT_DETERMINISTIC -- "1": torch.use_deterministic_algorithms(True) without warn-only.
ENV_STRICT_DETERMINISTIC = "PARITY_STRICT_DETERMINISTIC"
# $set_env.py: PARITY_STEP_WRITER -- where a GPU step is finished and written: "update" (default: the trainer's
# thread, at the next optimizer update, while the GPU works on it) or "thread" (a background thread; measured
# slower on an H200, where it competes with the trainer's thread for the interpreter lock).
ENV_STEP_WRITER = "PARITY_STEP_WRITER"
STEP_WRITERS = ("update", "thread")


def step_writer_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """Where GPU steps are written (`ENV_STEP_WRITER`); an unknown value is an error, not a silent default."""
    value = environ.get(ENV_STEP_WRITER, "") or STEP_WRITERS[0]
    if value not in STEP_WRITERS:
        raise ConfigError(f"{ENV_STEP_WRITER}={value!r}: choose {' or '.join(STEP_WRITERS)}")
    return value


#: Environment variables that can change numerics, placement or seeding (here, not in metadata, which
#: imports torch: recording and cache keys read it in processes that never need torch).
NUMERICS_ENV = (
    "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE", "TORCH_CUDNN_V8_API_ENABLED", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "CUDA_LAUNCH_BLOCKING",
    "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NCCL_ALGO", "NCCL_PROTO",
    "PARITY_SEED", "PARITY_DETERMINISTIC", "PARITY_LEVEL", "PARITY_SKIP_LOADS",
)


@dataclass(frozen=True)
class CaptureConfig:
    """How much a step record holds."""

    level: str = schema.LEVEL_FULL
    """`full`, `every` (digests every `every_n` steps) or `minimal` (loss, lr, events)."""
    every_n: int = 1
    """For `every`: digest parameters, optimizer state, batch and RNG every N steps."""

    def __post_init__(self) -> None:
        if self.level not in schema.LEVELS:
            raise ConfigError(f"--level {self.level!r}: choose full, every:N or minimal")
        if self.every_n < 1:
            raise ConfigError(f"--level every:{self.every_n}: N must be >= 1")

    @classmethod
    def parse(cls, text: str) -> "CaptureConfig":
        """Parse `full`, `minimal` or `every:N`."""
        level, _, n = text.partition(":")
        if level == schema.LEVEL_EVERY:
            if not n.isdigit():
                raise ConfigError(f"--level {text!r}: write every:N with N a positive integer, e.g. every:10")
            return cls(level, int(n))
        if n:
            raise ConfigError(f"--level {text!r}: only `every` takes a count")
        return cls(level)

    def __str__(self) -> str:
        return f"every:{self.every_n}" if self.level == schema.LEVEL_EVERY else self.level

    def digests_at(self, step: int) -> bool:
        if self.level == schema.LEVEL_FULL:
            return True
        if self.level == schema.LEVEL_MINIMAL:
            return False
        return step % self.every_n == 0

    @classmethod
    def from_env(cls) -> "CaptureConfig":
        return cls.parse(os.environ.get(ENV_LEVEL, schema.LEVEL_FULL))
