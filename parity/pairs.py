"""Pair files: the one typed model of a declared comparison, parsed from TOML in one place.

A pair file (`parity/pairs/<name>.toml`, or any path) has these tables; every one is optional except
that `report`, `gate` and `ablate` need `[baseline]` and `[candidate]`, `resume-check` needs
`[resume]`, and `ablate` needs `[[toggle]]`. An unknown table or key, a value of the wrong type and an
unknown check name are refused (exit 2), all bad fields listed in one message, each as
`FILE: [table].key: expected WHAT, got VALUE`.

    [pair]
    name = "toy-warmup"              # default: the file's stem
    description = "..."
    ignore_args = ["ckpt_dir"]       # argparse values that differ by construction
    default_status = "IDENTICAL"     # expectation for checks not listed in [[expect]]
    repeat = false                   # true: record the baseline twice for a noise floor

    [baseline]                       # and [candidate]: how to run each side
    command = ["{python}", "train.py", "--steps", "{steps}", "--out", "{out}/ckpt"]
    cwd = "."                        # relative to the project root (the folder with pyproject.toml)
    seed = 0
    deterministic = false
    steps = { cpu = 30, cuda = 200 } # or one integer for both devices; cpu = 0 marks a GPU-only pair
    env = { OMP_NUM_THREADS = "1" }
    setup = ["{python}", "make_data.py", "--out", "{out}/data.csv"]   # run (not recorded) before the side
    device_args = { cuda = ["--model-preset", "base"] }                # appended on one device only

    [[expect]]                       # one per check (or "verdict"): the status the gate expects
    check = "lr_schedule"
    status = "DIFFERENT"             # IDENTICAL, EQUIVALENT, DIFFERENT or NOT_COMPARED
    reason = "warmup changes the lr from step 0"

    [tolerance]                      # per check: how far a scalar channel may move and stay EQUIVALENT
    loss = "4ulp"                    # "REL" (e.g. "1e-6"), "N%", "Nulp", or "bits" / "0" (exact)
    grad_norm = "1e-5"
    lr_schedule = "1e-7"

    [golden]                         # where stored goldens of this pair live (parity/golden/)
    dir = "goldens"                  # relative to the project root

    [resume]                         # the protocol of `parity resume-check`
    unit = "steps"                   # or "epochs"
    total = 24
    splits = [8, 16, 17]             # the first one is the split the pytest item and the controls use
    double = [8, 16]                 # optional stop-resume-stop-resume chain
    checkpoint = "{ckpt_dir}/step{at}.pt"
    run = ["{python}", "train.py", "--steps", "{stop_at}", "--save-every", "{save_at}", "--ckpt-dir", "{ckpt_dir}"]
    resume = ["{python}", "train.py", "--steps", "{stop_at}", "--ckpt-dir", "{ckpt_dir}", "--resume", "{ckpt}"]
    expect_exact = true              # makes `pytest parity/` collect a `<pair>::resume` item
    cwd = "."                        # seed, deterministic, env, cwd: as in a side
    metrics = { file = "{ckpt_dir}/log.jsonl", unit_key = "epoch", value_key = "loss", where = { event = "test" }, label = "test loss" }

    [[toggle]]                       # for `parity ablate`: one named difference, as arguments on each side
    name = "warmup"
    baseline = ["--warmup-steps", "0"]
    candidate = ["--warmup-steps", "5"]

    [metrics]                        # for `parity ablate`: a JSON-lines file each run writes; last value per key
    file = "{out}/metrics.jsonl"
    keys = ["val_loss"]

Placeholders in side commands: `{python}` (the interpreter running parity), `{steps}`, `{device}`,
`{out}` (the side's run directory), `{seed}`; in `[resume]` templates `{python}`, `{total}`,
`{stop_at}`, `{save_at}`, `{ckpt_dir}`, `{ckpt}`, `{device}`, `{seed}`.
"""

from __future__ import annotations

import difflib
import math
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from parity.checks.base import Tolerance
from parity.checks.compare import CHECK_NAMES
from parity.exceptions import ConfigError
from parity.trace import schema

#: Where bundled pair files live; `--pair NAME` looks here after treating NAME as a path.
PAIRS_DIR = Path(__file__).resolve().parent / "pairs"
#: The pseudo-check an `[[expect]]` names to gate the overall verdict.
VERDICT = "verdict"
#: Checks whose channel is a scalar per step, so that a `[tolerance]` means something for them.
TOLERANCE_CHECKS = ("loss", "grad_norm", "lr_schedule")
SIDE_PLACEHOLDERS = ("python", "steps", "device", "out", "seed")
RESUME_PLACEHOLDERS = ("python", "total", "stop_at", "save_at", "ckpt_dir", "ckpt", "device", "seed")
DEFAULT_STEPS = {"cpu": 20, "cuda": 200}


def parse_tolerance_value(text: str | float) -> Tolerance:
    """`1e-6` (relative), `0.01%`, `4ulp`, or `bits` / `0` (exact); ValueError says what is wrong.

    The one parser of the value syntax: the pair file's `[tolerance]` and `--tolerance loss:VALUE`."""
    value = str(text).strip()
    if value == "bits":
        return Tolerance()
    try:
        if value.endswith("ulp"):
            ulps, rel = int(value[:-3]), 0.0
        else:
            ulps, rel = 0, float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number, N%, Nulp or bits") from None
    # float() accepts "nan", "inf" and overflows "1e400" to inf: a tolerance that admits every value.
    if not math.isfinite(rel) or rel < 0 or ulps < 0:
        raise ValueError("the tolerance must be a finite number >= 0 (0 means exact)")
    return Tolerance(rel=rel, ulps=ulps)


@dataclass(frozen=True, kw_only=True)
class Launch:
    """How a recorded process starts: folder, environment, seeding. Shared by pair sides and `[resume]`."""

    cwd: Path
    """Working directory of the command (resolved; relative paths in the file are from the project root)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables added to the inherited environment."""
    seed: int | None = 0
    """Seed for Python, NumPy, torch and PYTHONHASHSEED before the trainer starts (None: not seeded)."""
    deterministic: bool = False
    """torch deterministic algorithms (warn-only) and CUBLAS_WORKSPACE_CONFIG."""


@dataclass(frozen=True, kw_only=True)
class Side(Launch):
    """One runnable side of a pair; never runs anything itself (sides.record_side does)."""

    name: str
    command: tuple[str, ...]
    """Argument list; placeholders {python}, {steps}, {device}, {out}, {seed} are filled at run time."""
    steps: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_STEPS))
    """Step budget per device."""
    setup: tuple[str, ...] = ()
    """Optional command run (not recorded) before the side, e.g. to generate its synthetic data."""
    device_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Arguments appended on one device only, e.g. {"cuda": ("--model-preset", "base")}."""

    def render(self, *, steps: int, device: str, out: Path, template: tuple[str, ...] | None = None) -> list[str]:
        values = {"python": sys.executable, "steps": steps, "device": device, "out": str(out.resolve()),
                  "seed": self.seed if self.seed is not None else 0}
        parts = (*self.command, *self.device_args.get(device, ())) if template is None else template
        try:
            return [part.format(**values) for part in parts]
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{self.name}.command: unknown placeholder {exc}; use {{python}} {{steps}} {{device}} {{out}} {{seed}}") from None

    def budget(self, device: str, steps: int | None = None) -> int:
        """`steps` when given (the command line's --steps), else this side's budget on `device`."""
        return steps or self.steps.get(device, DEFAULT_STEPS["cpu"])


@dataclass(frozen=True)
class Expectation:
    """The status a check (or the overall verdict) must have for the gate to pass."""

    check: str
    status: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ResumeProtocol(Launch):
    """How to run a trainer continuously, stop it with a checkpoint, and resume it (`[resume]`)."""

    name: str
    """The pair's name: runs go under `<runs_dir>/<name>/resume/`."""
    path: Path
    description: str = ""
    run: tuple[str, ...]
    """Template with {total} {stop_at} {save_at} {ckpt_dir}: runs from scratch, stops after {stop_at} units."""
    resume: tuple[str, ...]
    """Template with {ckpt} {total} {stop_at} {save_at} {ckpt_dir}: resumes from {ckpt} in a fresh process."""
    checkpoint: str
    """Where the checkpoint saved at {at} lands, e.g. "{ckpt_dir}/step{at}.pt"."""
    total: int
    splits: tuple[int, ...]
    double: tuple[int, ...] = ()
    unit: str = "steps"
    expect_exact: bool | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
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

    def render(self, template: tuple[str, ...], **values: Any) -> list[str]:
        values = {"python": sys.executable, "seed": self.seed if self.seed is not None else 0, **values}
        try:
            return [part.format(**values) for part in template]
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{self.path}: [resume] template uses unknown placeholder {exc}; "
                              f"use {', '.join('{' + p + '}' for p in RESUME_PLACEHOLDERS)}") from None

    def checkpoint_path(self, ckpt_dir: Path, at: int) -> str:
        return self.checkpoint.format(ckpt_dir=ckpt_dir, at=at)

    def side(self, name: str, command: list[str]) -> Side:
        """A rendered command as a side that records it as it is (braces in paths stay literal)."""
        literal = tuple(part.replace("{", "{{").replace("}", "}}") for part in command)
        return Side(name=name, command=literal, cwd=self.cwd, env=self.env, seed=self.seed,
                    deterministic=self.deterministic)


@dataclass(frozen=True)
class Toggle:
    """One named difference for `parity ablate`: the arguments that spell it on each side."""

    name: str
    baseline: tuple[str, ...]
    candidate: tuple[str, ...]


@dataclass(frozen=True)
class Metrics:
    """A per-run metrics file the trainer writes (JSON lines; `{out}` is the run directory); last value per key."""

    file: str
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Golden:
    """Where this pair's stored goldens live; parity/golden/ keeps `<dir>/<pair>/<env>/` under it."""

    dir: Path


@dataclass(frozen=True)
class Pair:
    """A declared comparison: two sides, what is expected of them, and the protocols built on them.

    Parsed once by `load_pair`; every consumer (session, plugin, resume, ablate) reads this object and
    never the TOML."""

    name: str
    path: Path
    description: str
    baseline: Side | None
    candidate: Side | None
    """None when the file declares no sides (a resume-only pair); `sides()` refuses then."""
    expectations: tuple[Expectation, ...] = ()
    default_status: str | None = None
    ignore_args: frozenset[str] = frozenset()
    repeat: bool = False
    """Record the baseline twice and judge the candidate against the baseline's noise floor."""
    resume: ResumeProtocol | None = None
    toggles: tuple[Toggle, ...] = ()
    metrics: Metrics | None = None
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    """Check name -> tolerance (`[tolerance]`); `gate`, `report` and the pytest items all apply it."""
    golden: Golden | None = None
    """Where goldens of this pair are stored; the project's `goldens/` unless `[golden].dir` says otherwise."""

    def expected(self, check: str) -> Expectation | None:
        """The expectation for `check`: declared, else the pair's default status (never for the verdict)."""
        for e in self.expectations:
            if e.check == check:
                return e
        if self.default_status and check != VERDICT:
            return Expectation(check, self.default_status, "default for checks the pair file does not list")
        return None

    def gated(self) -> tuple[Expectation, ...]:
        """Everything the gate checks, in report order: the verdict if declared, then each check."""
        return tuple(e for e in (self.expected(name) for name in (VERDICT, *CHECK_NAMES)) if e is not None)

    def sides(self) -> tuple[Side, Side]:
        if self.baseline is None or self.candidate is None:
            raise ConfigError(f"{self.path}: missing [baseline] and [candidate] tables with at least `command = [...]`")
        return self.baseline, self.candidate

    def resume_protocol(self) -> ResumeProtocol:
        if self.resume is None:
            raise ConfigError(f"{self.path}: no [resume] table; declare run, resume, checkpoint, total and splits")
        return self.resume


class _Bad(Exception):
    """A value is not what its key expects; the message says what was expected."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("a string")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _int_at_least(low: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _Bad(f"an integer >= {low}")
        return value
    return convert


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad("a list of strings")
    return tuple(value)


def _ints(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _Bad("a list of integers")
    return tuple(value)


def _template(placeholders: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    """A non-empty argument list (or one string, split on spaces) using only `placeholders`."""
    def convert(value: Any) -> tuple[str, ...]:
        parts = tuple(value.split()) if isinstance(value, str) else _texts(value)
        if not parts:
            raise _Bad("a non-empty list of strings")
        try:
            used = {name for part in parts for _, name, _, _ in string.Formatter().parse(part) if name is not None}
        except ValueError as exc:
            raise _Bad(f"valid {{placeholder}} syntax ({exc})") from None
        unknown = sorted(used - set(placeholders))
        if unknown:
            raise _Bad(f"placeholders among {', '.join('{' + p + '}' for p in placeholders)}; unknown: {unknown}")
        return parts
    return convert


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise _Bad("a table of NAME = value")
    return {str(k): str(v) for k, v in value.items()}


def _steps(value: Any) -> dict[str, int]:
    count = _int_at_least(0)
    if isinstance(value, int) and not isinstance(value, bool):
        return {"cpu": count(value), "cuda": count(value)}
    if not isinstance(value, dict) or not set(value) <= {"cpu", "cuda"}:
        raise _Bad("an integer or a table { cpu = N, cuda = N }")
    try:
        return {device: count(n) for device, n in value.items()}
    except _Bad:
        raise _Bad("an integer or a table { cpu = N, cuda = N } of integers >= 0") from None


def _device_args(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or not set(value) <= {"cpu", "cuda"}:
        raise _Bad("a table { cuda = [arguments] }")
    convert = _template(SIDE_PLACEHOLDERS)
    return {device: convert(args) for device, args in value.items()}


def _status(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in schema.STATUSES:
        raise _Bad(f"one of {', '.join(schema.STATUSES)}")
    return value.upper()


def _check(value: Any) -> str:
    if value not in (VERDICT, *CHECK_NAMES):
        raise _Bad(f"a check name: {VERDICT}, {', '.join(CHECK_NAMES)}")
    return value


def _tolerance(value: Any) -> Tolerance:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad('a tolerance such as "1e-6", "0.01%", "4ulp" or "bits"')
    try:
        return parse_tolerance_value(value)
    except ValueError as exc:
        raise _Bad(f'a tolerance such as "1e-6", "0.01%", "4ulp" or "bits" ({exc})') from None


def _resume_metrics(value: Any) -> dict[str, Any]:
    known = {"file", "unit_key", "value_key", "where", "label"}
    if not isinstance(value, dict) or not set(value) <= known or not {"file", "unit_key", "value_key"} <= set(value):
        raise _Bad(f"a table with file, unit_key, value_key (and optionally where, label); got keys {sorted(value) if isinstance(value, dict) else value!r}")
    return dict(value)


_REQUIRED = object()
_SIDE_KEYS = ("command", "cwd", "seed", "deterministic", "steps", "env", "setup", "device_args")
_TABLES = {
    "pair": ("name", "description", "ignore_args", "default_status", "repeat"),
    "baseline": _SIDE_KEYS, "candidate": _SIDE_KEYS,
    "expect": ("check", "status", "reason"),
    "resume": ("unit", "total", "splits", "double", "checkpoint", "run", "resume", "expect_exact", "metrics",
               "cwd", "env", "seed", "deterministic"),
    "toggle": ("name", "baseline", "candidate"),
    "metrics": ("file", "keys"),
    "tolerance": TOLERANCE_CHECKS,
    "golden": ("dir",),
}
#: Tables written `[[name]]`: a list of tables.
_ARRAYS = ("expect", "toggle")


class _Reader:
    """Reads the tables of one pair file, collecting every bad field before anything is raised."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data, self.problems = path, data, []
        for name in sorted(set(data) - set(_TABLES)):
            self.problems.append(f"[{name}]: unknown table (known: {', '.join(f'[{t}]' for t in _TABLES)})")

    def tables(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(where, table) for each `[[name]]`, or the one `[name]` (none when absent)."""
        value = self.data.get(name)
        if value is None:
            return []
        many = name in _ARRAYS
        if many != isinstance(value, list) or not all(isinstance(t, dict) for t in (value if many else [value])):
            self.problems.append(f"[{name}]: expected {'[[' + name + ']] tables' if many else 'a [' + name + '] table'}")
            return []
        found = [(f"[[{name}]] #{i + 1}", t) for i, t in enumerate(value)] if many else [(f"[{name}]", value)]
        for where, table in found:
            for key in sorted(set(table) - set(_TABLES[name])):
                self.problems.append(f"{where}.{key}: unknown key (known: {', '.join(_TABLES[name])})")
        return found

    def get(self, table: dict[str, Any], where: str, key: str, convert: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
        if key not in table:
            if default is _REQUIRED:
                self.problems.append(f"{where}.{key}: missing")
            return None if default is _REQUIRED else default
        try:
            return convert(table[key])
        except _Bad as exc:
            self.problems.append(f"{where}.{key}: expected {exc}, got {table[key]!r}")
            return None if default is _REQUIRED else default

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(f"{self.path}: " + "; ".join(self.problems))


def _project_root(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()


def _launch(r: _Reader, table: dict[str, Any], where: str, root: Path) -> dict[str, Any]:
    return {"cwd": (root / r.get(table, where, "cwd", _text, ".")).resolve(), "env": r.get(table, where, "env", _env, {}),
            "seed": r.get(table, where, "seed", _int_at_least(0), 0),
            "deterministic": r.get(table, where, "deterministic", _flag, False)}


def _side(r: _Reader, name: str, root: Path) -> Side | None:
    found = r.tables(name)
    if not found:
        return None
    where, table = found[0]
    command = r.get(table, where, "command", _template(SIDE_PLACEHOLDERS))
    side = Side(name=name, command=command or (), **_launch(r, table, where, root),
                steps=r.get(table, where, "steps", _steps, dict(DEFAULT_STEPS)),
                setup=r.get(table, where, "setup", _template(SIDE_PLACEHOLDERS), ()),
                device_args=r.get(table, where, "device_args", _device_args, {}))
    return side


def _resume(r: _Reader, meta: dict[str, Any], root: Path) -> ResumeProtocol | None:
    found = r.tables("resume")
    if not found:
        return None
    where, t = found[0]
    template = _template(RESUME_PLACEHOLDERS)
    fields = {"run": r.get(t, where, "run", template), "resume": r.get(t, where, "resume", template),
              "checkpoint": r.get(t, where, "checkpoint", _text), "total": r.get(t, where, "total", _int_at_least(1)),
              "splits": r.get(t, where, "splits", _ints), "double": r.get(t, where, "double", _ints, ()),
              "unit": r.get(t, where, "unit", _text, "steps"),
              "expect_exact": r.get(t, where, "expect_exact", _flag, None),
              "metrics": r.get(t, where, "metrics", _resume_metrics, {}), **_launch(r, t, where, root)}
    if r.problems:
        return None  # the protocol's own checks (splits within total, ...) need well-typed fields
    return ResumeProtocol(name=meta["name"], path=r.path, description=meta["description"], **fields)


def load_pair(spec: str | Path) -> Pair:
    """Load a pair by path or by bundled name (`parity/pairs/<name>.toml`); ConfigError lists every bad field."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = PAIRS_DIR / f"{spec}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PAIRS_DIR.glob("*.toml"))
        close = difflib.get_close_matches(str(spec), known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"no pair file {spec!r}; {hint}bundled pairs: {', '.join(known)}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    r = _Reader(path, data)
    root = _project_root(path)
    where, meta = (r.tables("pair") or [("[pair]", {})])[0]
    info = {"name": r.get(meta, where, "name", _text, path.stem),
            "description": r.get(meta, where, "description", _text, "")}
    baseline, candidate = _side(r, "baseline", root), _side(r, "candidate", root)
    if (baseline is None) != (candidate is None):
        r.problems.append("a pair declares both [baseline] and [candidate], or neither (a resume-only pair)")
    expectations = tuple(Expectation(r.get(t, w, "check", _check), r.get(t, w, "status", _status),
                                     r.get(t, w, "reason", _text, "")) for w, t in r.tables("expect"))
    toggles = tuple(Toggle(r.get(t, w, "name", _text), r.get(t, w, "baseline", _texts), r.get(t, w, "candidate", _texts))
                    for w, t in r.tables("toggle"))
    metrics = next((Metrics(r.get(t, w, "file", _text), r.get(t, w, "keys", _texts, ())) for w, t in r.tables("metrics")), None)
    tolerances = {check: r.get(t, w, check, _tolerance) for w, t in r.tables("tolerance") for check in t if check in TOLERANCE_CHECKS}
    golden_dir = next((r.get(t, w, "dir", _text, "goldens") for w, t in r.tables("golden")), "goldens")
    options = dict(ignore_args=frozenset(r.get(meta, where, "ignore_args", _texts, ())),
                default_status=r.get(meta, where, "default_status", _status, None),
                repeat=r.get(meta, where, "repeat", _flag, False))
    resume = _resume(r, info, root)
    r.raise_if_any()
    return Pair(path=path, baseline=baseline, candidate=candidate, expectations=expectations, resume=resume,
                toggles=toggles, metrics=metrics, tolerances=tolerances, golden=Golden((root / golden_dir).resolve()),
                **info, **options)
