"""Pair files: how to run a baseline and a candidate, and which differences are expected (TOML)."""

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
from parity.trace import schema

#: Where bundled pair files live; `--pair NAME` looks here after treating NAME as a path.
PAIRS_DIR = Path(__file__).resolve().parent / "pairs"


@dataclass
class Side:
    """One runnable side of a pair."""

    name: str
    command: list[str]
    """Argument list; placeholders {python}, {steps}, {device}, {out}, {seed} are filled at run time."""
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    seed: int | None = 0
    steps: dict[str, int] = field(default_factory=lambda: {"cpu": 20, "cuda": 200})
    deterministic: bool = False
    setup: list[str] = field(default_factory=list)
    """Optional command run (not recorded) before the side, e.g. to generate its synthetic data."""
    device_args: dict[str, list[str]] = field(default_factory=dict)
    """Arguments appended on one device only, e.g. {"cuda": ["--model-preset", "base"]}."""

    def render(self, *, steps: int, device: str, out: Path, template: list[str] | None = None) -> list[str]:
        values = {"python": sys.executable, "steps": steps, "device": device, "out": str(out.resolve()),
                  "seed": self.seed if self.seed is not None else 0}
        try:
            parts = self.command + self.device_args.get(device, []) if template is None else template
            return [part.format(**values) for part in parts]
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{self.name}.command: unknown placeholder {exc}; use {{python}} {{steps}} {{device}} {{out}} {{seed}}") from None


@dataclass
class Expectation:
    check: str
    status: str
    reason: str = ""


@dataclass
class Pair:
    """A declared comparison: two sides and the findings expected of them."""

    name: str
    path: Path
    description: str
    baseline: Side
    candidate: Side
    expectations: list[Expectation]
    default_status: str | None
    ignore_args: frozenset[str]
    repeat: bool = False
    """Record the baseline twice and judge the candidate against the baseline's noise floor."""

    def expected(self, check: str) -> Expectation | None:
        for e in self.expectations:
            if e.check == check:
                return e
        if self.default_status:
            return Expectation(check, self.default_status, "default for checks the pair file does not list")
        return None


def _project_root(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()


def _side(data: dict[str, Any], name: str, root: Path, where: Path) -> Side:
    if name not in data:
        raise ConfigError(f"{where}: missing [{name}] table with at least `command = [...]`")
    table = data[name]
    command = table.get("command")
    if isinstance(command, str):
        command = command.split()
    if not command or not all(isinstance(c, str) for c in command):
        raise ConfigError(f"{where}: [{name}].command must be a non-empty list of strings")
    steps = table.get("steps", {"cpu": 20, "cuda": 200})
    if isinstance(steps, int):
        steps = {"cpu": steps, "cuda": steps}
    return Side(name=name, command=list(command), cwd=(root / table.get("cwd", ".")).resolve(),
                env={str(k): str(v) for k, v in table.get("env", {}).items()}, seed=table.get("seed", 0),
                steps=steps, deterministic=bool(table.get("deterministic", False)),
                setup=[str(a) for a in table.get("setup", [])],
                device_args={str(k): [str(a) for a in v] for k, v in table.get("device_args", {}).items()})


def load_pair(spec: str | Path) -> Pair:
    """Load a pair by path or by bundled name (`parity/pairs/<name>.toml`)."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PAIRS_DIR / f"{spec}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PAIRS_DIR.glob("*.toml")))
        raise ConfigError(f"no pair file {spec!r}; bundled pairs: {known}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    root = _project_root(path)
    meta = data.get("pair", {})
    expectations = []
    for i, e in enumerate(data.get("expect", [])):
        status = str(e.get("status", "")).upper()
        if "check" not in e or status not in schema.STATUSES:
            raise ConfigError(f"{path}: [[expect]] #{i + 1} needs `check` and `status` in {', '.join(schema.STATUSES)}")
        expectations.append(Expectation(e["check"], status, e.get("reason", "")))
    default = meta.get("default_status")
    if default is not None and default.upper() not in schema.STATUSES:
        raise ConfigError(f"{path}: [pair].default_status must be one of {', '.join(schema.STATUSES)}")
    return Pair(name=meta.get("name", path.stem), path=path, description=meta.get("description", ""),
                baseline=_side(data, "baseline", root, path), candidate=_side(data, "candidate", root, path),
                expectations=expectations, default_status=default.upper() if default else None,
                ignore_args=frozenset(meta.get("ignore_args", [])), repeat=bool(meta.get("repeat", False)))

