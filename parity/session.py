"""The facade: record, compare, report and gate. The CLI and the pytest plugin are thin shells over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from parity.capture.launch import RecordResult, record_command
from parity.checks.base import Tolerance
from parity.checks.compare import CHECK_NAMES, Comparison, compare_traces
from parity.exceptions import ConfigError
from parity.pairs import Pair, Side, load_pair
from parity.sides import record_side, resolve_side
from parity.trace.reader import Run, Trace, load_run


def record(command: Sequence[str], out: str | Path, **options: Any) -> RecordResult:
    """Record a training command (see capture.launch.record_command for the options)."""
    return record_command(command, out, **options)


def _trace_of(run: Run, rank: int):
    if rank not in run.traces:
        raise ConfigError(f"{run.path}: no trace for rank {rank}; ranks present: {sorted(run.traces)}")
    return run.traces[rank]


def compare(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance = Tolerance(),
            baseline_repeat: str | Path | None = None, rank: int = 0,
            ignore_args: frozenset[str] = frozenset()) -> Comparison:
    """Compare two recorded runs (rank `rank` of each)."""
    return compare_with_traces(baseline, candidate, tolerance=tolerance, baseline_repeat=baseline_repeat, rank=rank,
                               ignore_args=ignore_args)[0]


def compare_with_traces(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance = Tolerance(),
                        baseline_repeat: str | Path | None = None, rank: int = 0,
                        ignore_args: frozenset[str] = frozenset()) -> tuple[Comparison, Trace, Trace]:
    """Like `compare`, also returning the two traces it read (reports need them; traces are read once)."""
    base, cand = _trace_of(load_run(baseline), rank), _trace_of(load_run(candidate), rank)
    repeat = _trace_of(load_run(baseline_repeat), rank) if baseline_repeat else None
    c = compare_traces(base, cand, tolerance=tolerance, baseline_repeat=repeat, ignore_args=ignore_args)
    return c, base, cand


@dataclass
class PairRuns:
    """Run directories produced for a pair (or given directly)."""

    baseline: Path
    candidate: Path
    baseline_repeat: Path | None = None
    commands: dict[str, str] = field(default_factory=dict)


def run_pair(pair: Pair | None, *, baseline: str | None = None, candidate: str | None = None,
             command: Sequence[str] | None = None, steps: int | None = None, device: str = "cpu",
             runs_dir: str | Path = "runs", repeat: bool | None = None, cache: bool = True) -> PairRuns:
    """Record what needs recording for a pair (or explicit sides) and return the run directories.

    Runs are cached under `<runs_dir>/.cache` by (command, environment, seed, code revision), so a
    second report or gate reuses what it already has; `cache=False` always re-records.
    """
    root = Path(runs_dir) / (pair.name if pair else "adhoc")
    cache_dir = Path(runs_dir) / ".cache" if cache else None
    explicit = Side("command", list(command), Path.cwd()) if command else None
    fallback_base = pair.baseline if pair else explicit
    fallback_cand = pair.candidate if pair else explicit
    dirs: dict[str, Path] = {}
    for name, spec, side in (("baseline", baseline, fallback_base), ("candidate", candidate, fallback_cand)):
        out = root / name
        if spec is None:
            if side is None:
                raise ConfigError(f"no {name}: give --{name} DIR|git:REV or --pair NAME")
            record_side(side, out, steps=steps or side.steps.get(device, 20), device=device, cache_dir=cache_dir)
            dirs[name] = out
        else:
            dirs[name] = resolve_side(spec, fallback=side, out=out, steps=steps, device=device)
    repeat_dir = None
    if (repeat if repeat is not None else (pair.repeat if pair else False)) and fallback_base is not None:
        repeat_dir = root / "baseline-repeat"
        record_side(fallback_base, repeat_dir, steps=steps or fallback_base.steps.get(device, 20), device=device,
                    label="baseline (repeat, for the noise floor)", cache_dir=cache_dir, salt="repeat")
    return PairRuns(dirs["baseline"], dirs["candidate"], repeat_dir)


@dataclass
class GateFailure:
    check: str
    expected: str
    actual: str
    step: int | None
    summary: str
    reason: str


def gate_failures(pair: Pair, comparison: Comparison) -> list[GateFailure]:
    """Every check whose status differs from the pair file's expectation (all listed, not the first)."""
    failures = []
    names = {e.check for e in pair.expectations}
    unknown = names - set(CHECK_NAMES) - {"verdict"}
    if unknown:
        raise ConfigError(f"{pair.path}: [[expect]] names unknown checks {sorted(unknown)}; known: verdict, {', '.join(CHECK_NAMES)}")
    for name in ("verdict", *CHECK_NAMES):
        expectation = pair.expected(name) if name != "verdict" else next((e for e in pair.expectations if e.check == "verdict"), None)
        if expectation is None:
            continue
        if name == "verdict":
            actual, step, summary = comparison.verdict, (comparison.first_divergence or {}).get("step"), "overall verdict"
        else:
            f = comparison.finding(name)
            actual, step, summary = f.status, f.first_divergent_step, f.summary
        if actual != expectation.status:
            failures.append(GateFailure(name, expectation.status, actual, step, summary, expectation.reason))
    return failures


def load(pair: str | Path) -> Pair:
    return load_pair(pair)


def resume_check(pair: str | Path, *, splits: list[int] | None = None, controls: bool = False, double: bool = True,
                 runs_dir: str | Path = "runs", device: str = "cpu"):
    """Run the pair's [resume] protocol and return a ResumeResult."""
    from parity.resume.protocol import load_protocol
    from parity.resume.runner import ResumeRunner

    protocol = load_protocol(pair)
    return ResumeRunner(protocol, Path(runs_dir), device).run(splits=splits, double=double, controls=controls)
