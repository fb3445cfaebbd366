"""The `[resume]` table of a pair file: command templates for continuous, stopped and resumed runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from parity.exceptions import ConfigError
from parity.pairs import PAIRS_DIR, _project_root

PLACEHOLDERS = ("python", "total", "stop_at", "save_at", "ckpt_dir", "ckpt", "device", "seed")


@dataclass
class ResumeProtocol:
    """How to run a trainer continuously, stop it with a checkpoint, and resume it."""

    name: str
    path: Path
    run: list[str]
    """Template with {total} {stop_at} {save_at} {ckpt_dir}: runs from scratch, stops after {stop_at} units."""
    resume: list[str]
    """Template with {ckpt} {total} {stop_at} {save_at} {ckpt_dir}: resumes from {ckpt} in a fresh process."""
    checkpoint: str
    """Where the checkpoint saved at {at} lands, e.g. "{ckpt_dir}/step{at}.pt"."""
    total: int
    splits: list[int]
    double: list[int] = field(default_factory=list)
    unit: str = "steps"
    cwd: Path = Path(".")
    env: dict[str, str] = field(default_factory=dict)
    seed: int | None = 0
    expect_exact: bool | None = None
    description: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Optional trainer log to read a per-unit metric from (e.g. test loss), as the trace holds train losses only:
    {file = "{ckpt_dir}/log.jsonl", unit_key = "epoch", value_key = "loss", where = {event = "test"}, label = "test loss"}."""

    def __post_init__(self) -> None:
        if self.unit not in ("steps", "epochs"):
            raise ConfigError(f"{self.path}: [resume].unit must be 'steps' or 'epochs'")
        bad = [k for k in self.splits + self.double if not 0 < k < self.total]
        if bad:
            raise ConfigError(f"{self.path}: split points {bad} must lie strictly between 0 and total={self.total}")
        if self.double and (len(self.double) != 2 or self.double[0] >= self.double[1]):
            raise ConfigError(f"{self.path}: [resume].double must be two increasing split points, e.g. [4, 8]")

    def render(self, template: list[str], **values: Any) -> list[str]:
        values = {"python": sys.executable, "seed": self.seed if self.seed is not None else 0, **values}
        try:
            return [part.format(**values) for part in template]
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{self.path}: [resume] template uses unknown placeholder {exc}; "
                              f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}") from None

    def checkpoint_path(self, ckpt_dir: Path, at: int) -> str:
        return self.checkpoint.format(ckpt_dir=ckpt_dir, at=at)


def load_protocol(spec: str | Path) -> ResumeProtocol:
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PAIRS_DIR / f"{spec}.toml"
    if not path.is_file():
        raise ConfigError(f"no pair file {spec!r} with a [resume] table")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    table = data.get("resume")
    if not table:
        raise ConfigError(f"{path}: no [resume] table; declare run, resume, checkpoint, total and splits")
    missing = [k for k in ("run", "resume", "checkpoint", "total", "splits") if k not in table]
    if missing:
        raise ConfigError(f"{path}: [resume] lacks {', '.join(missing)}")
    meta = data.get("pair", {})
    return ResumeProtocol(name=meta.get("name", path.stem), path=path, run=list(table["run"]), resume=list(table["resume"]),
                          checkpoint=table["checkpoint"], total=int(table["total"]),
                          splits=[int(s) for s in table["splits"]], double=[int(s) for s in table.get("double", [])],
                          unit=table.get("unit", "steps"), cwd=(_project_root(path) / table.get("cwd", ".")).resolve(),
                          env={str(k): str(v) for k, v in table.get("env", {}).items()}, seed=table.get("seed", 0),
                          expect_exact=table.get("expect_exact"), description=meta.get("description", ""),
                          metrics=dict(table.get("metrics", {})))
