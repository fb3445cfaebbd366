"""Run a training command in a child process with capture injected into every Python process it starts."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import parity
from parity.capture import config as cfg
from parity.exceptions import BaselineError, ConfigError
from parity.trace import schema
from parity.trace.writer import encode_record

_INJECT_DIR = Path(__file__).resolve().parent / "_inject"
#: Written next to the traces: how the run was made, so reports can print the command that reproduces it.
RUN_FILE = "run.json"


@dataclass
class RecordResult:
    """What a recorded command left behind."""

    directory: Path
    returncode: int
    seconds: float
    log: Path | None


def _child_env(out: Path, seed: int | None, deterministic: bool, level: str, skip_loads: Sequence[str],
               extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    package_root = str(Path(parity.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_INJECT_DIR), package_root, env.get("PYTHONPATH", "")) if p)
    env[cfg.ENV_DIR] = str(out.resolve())
    env[cfg.ENV_LEVEL] = level
    env.pop(cfg.ENV_SEED, None)
    if seed is not None:
        env[cfg.ENV_SEED] = str(seed)
        env["PYTHONHASHSEED"] = str(seed)  # only effective if set before the interpreter starts
    if deterministic:
        env[cfg.ENV_DETERMINISTIC] = "1"
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if skip_loads:
        env[cfg.ENV_SKIP_LOADS] = ",".join(skip_loads)
    return env


def prepare_run_dir(out: Path, force: bool) -> None:
    """Create-only: refuse to mix a new run into an old one unless `force` clears the old traces."""
    existing = list(out.glob(schema.TRACE_GLOB)) if out.is_dir() else []
    if existing and not force:
        raise ConfigError(f"{out}: already holds a recorded run ({existing[0].name}); pass --force to replace it "
                          "or choose another --out")
    for f in existing + [out / RUN_FILE]:
        if f.exists():
            f.unlink()
    out.mkdir(parents=True, exist_ok=True)


def record_command(command: Sequence[str], out: str | os.PathLike, *, seed: int | None = None,
                   deterministic: bool = False, level: str = schema.LEVEL_FULL, cwd: str | os.PathLike | None = None,
                   env: dict[str, str] | None = None, skip_loads: Sequence[str] = (), force: bool = False,
                   log_output: bool = False, timeout: float | None = None) -> RecordResult:
    """Run `command`, recording every Python process it starts, one trace per rank, under `out`."""
    if not command:
        raise ConfigError("no command to record: put it after `--`, e.g. parity record --out runs/a -- python train.py")
    cfg.CaptureConfig.parse(level)
    out = Path(out)
    prepare_run_dir(out, force)
    child_env = _child_env(out, seed, deterministic, level, skip_loads, env)
    log = out / "output.log" if log_output else None
    started = time.perf_counter()
    try:
        with (open(log, "w") if log else open(os.devnull, "w")) as sink:
            stream = sink if log else None
            proc = subprocess.run(list(command), cwd=cwd, env=child_env, stdout=stream,
                                  stderr=subprocess.STDOUT if log else None, timeout=timeout)
    except FileNotFoundError:
        raise ConfigError(f"cannot run {command[0]!r}: no such program (check the command after `--`)") from None
    except subprocess.TimeoutExpired:
        raise BaselineError(f"{shlex.join(command)}: still running after {timeout:.0f} s; the partial trace is in {out}") from None
    seconds = time.perf_counter() - started
    provenance = {"command": list(command), "cwd": str(Path(cwd or ".").resolve()), "seed": seed,
                  "deterministic": deterministic, "level": level, "skip_loads": list(skip_loads),
                  "env": env or {}, "returncode": proc.returncode, "seconds": round(seconds, 3),
                  "python": sys.executable}
    (out / RUN_FILE).write_text(encode_record(provenance) + "\n")
    return RecordResult(out, proc.returncode, seconds, log)


def load_provenance(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
