"""The facade: record, compare, report, gate, ablate, resume-check. The CLI and the pytest plugin are thin shells over it.

Every call takes a `Pair` (or a pair name or path) and plain values, returns a result dataclass from
`parity.results`, never prints a report and never chooses an exit code: the front ends render and decide.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from parity.capture.launch import RecordResult, record_command
from parity.checks.base import Tolerance
from parity.checks.compare import Comparison, compare_traces
from parity.exceptions import ConfigError
from parity.pairs import VERDICT, Pair, Side, load_pair
from parity.results import AblationResult, GateFailure, GateResult, PairRuns, ReportResult, ResumeResult
from parity.sides import GIT_PREFIX, record_side, resolve_side
from parity.trace.reader import Run, Trace, load_run

__all__ = ["GateFailure", "GateResult", "PairRuns", "ReportResult", "ablate", "compare", "compare_with_traces", "gate",
           "gate_failures", "load", "record", "report", "report_runs", "resume_check", "run_pair", "tolerances"]


def record(command: Sequence[str], out: str | Path, **options: Any) -> RecordResult:
    """Record a training command (see capture.launch.record_command for the options)."""
    return record_command(command, out, **options)


def load(pair: str | Path | Pair) -> Pair:
    """A pair by name or path (a `Pair` is returned as it is)."""
    return pair if isinstance(pair, Pair) else load_pair(pair)


def _trace_of(run: Run, rank: int) -> Trace:
    if rank not in run.traces:
        raise ConfigError(f"{run.path}: no trace for rank {rank}; ranks present: {sorted(run.traces)}")
    return run.traces[rank]


def compare(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance | None = None,
            baseline_repeat: str | Path | None = None, rank: int = 0,
            ignore_args: frozenset[str] = frozenset()) -> Comparison:
    """Compare two recorded runs (rank `rank` of each)."""
    return compare_with_traces(baseline, candidate, tolerance=tolerance, baseline_repeat=baseline_repeat, rank=rank,
                               ignore_args=ignore_args)[0]


def compare_with_traces(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance | None = None,
                        baseline_repeat: str | Path | None = None, rank: int = 0,
                        ignore_args: frozenset[str] = frozenset()) -> tuple[Comparison, Trace, Trace]:
    """Like `compare`, also returning the two traces it read (reports need them; traces are read once)."""
    base, cand = _trace_of(load_run(baseline), rank), _trace_of(load_run(candidate), rank)
    repeat = _trace_of(load_run(baseline_repeat), rank) if baseline_repeat else None
    c = compare_traces(base, cand, tolerance=tolerance or Tolerance(), baseline_repeat=repeat, ignore_args=ignore_args)
    return c, base, cand


def tolerances(pair: Pair | None, override: Tolerance | None = None) -> dict[str, Tolerance]:
    """Check name -> tolerance for one run: the pair file's `[tolerance]`, with `--tolerance` (loss) over it.

    The one place gate, report and the pytest items get their tolerances from, so that they agree."""
    chosen = dict(pair.tolerances) if pair else {}
    if override is not None:
        chosen["loss"] = override
    return chosen


def _loss_tolerance(chosen: Mapping[str, Tolerance]) -> Tolerance:
    # The checks take one Tolerance today, applied to the loss; grad_norm and lr_schedule entries are
    # kept in the mapping for when their checks take one too (they stay exact until then: stricter, never laxer).
    return chosen.get("loss", Tolerance())


def run_pair(pair: Pair | None, *, baseline: str | None = None, candidate: str | None = None,
             command: Sequence[str] | None = None, steps: int | None = None, device: str = "cpu",
             runs_dir: str | Path = "runs", repeat: bool | None = None, cache: bool = True) -> PairRuns:
    """Record what needs recording for a pair (or explicit sides) and return the run directories.

    Runs are cached under `<runs_dir>/.cache` by (command, environment, seed, code revision), so a
    second report or gate reuses what it already has; `cache=False` always re-records.
    """
    root = Path(runs_dir) / (pair.name if pair else "adhoc")
    cache_dir = Path(runs_dir) / ".cache" if cache else None
    explicit = Side(name="command", command=tuple(command), cwd=Path.cwd()) if command else None
    fallback_base, fallback_cand = pair.sides() if pair else (explicit, explicit)
    dirs: dict[str, Path] = {}
    for name, spec, side in (("baseline", baseline, fallback_base), ("candidate", candidate, fallback_cand)):
        out = root / name
        if spec is None:
            if side is None:
                raise ConfigError(f"no {name}: give --{name} DIR|git:REV or --pair NAME")
            record_side(side, out, steps=side.budget(device, steps), device=device, cache_dir=cache_dir)
            dirs[name] = out
        else:
            dirs[name] = resolve_side(spec, fallback=side, out=out, steps=steps, device=device)
    repeat_dir = None
    if (repeat if repeat is not None else (pair.repeat if pair else False)) and fallback_base is not None:
        repeat_dir = root / "baseline-repeat"
        record_side(fallback_base, repeat_dir, steps=fallback_base.budget(device, steps), device=device,
                    label="baseline (repeat, for the noise floor)", cache_dir=cache_dir, salt="repeat")
    return PairRuns(dirs["baseline"], dirs["candidate"], repeat_dir)


def gate_failures(pair: Pair, comparison: Comparison) -> list[GateFailure]:
    """Every check whose status differs from the pair file's expectation (all listed, not the first).

    The only gate logic: `gate`, `report --pair` and the pytest items all judge through it."""
    failures = []
    for expectation in pair.gated():
        if expectation.check == VERDICT:
            actual, step, summary = (comparison.verdict, (comparison.first_divergence or {}).get("step"),
                                     "overall verdict")
        else:
            f = comparison.finding(expectation.check)
            actual, step, summary = f.status, f.first_divergent_step, f.summary
        if actual != expectation.status:
            failures.append(GateFailure(expectation.check, expectation.status, actual, step, summary, expectation.reason))
    return failures


def gate(pair: str | Path | Pair, *, steps: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs",
         tolerance: Tolerance | None = None, golden: str | Path | None = None) -> GateResult:
    """Record the pair (cached), compare with the pair's tolerances, and judge its expectations.

    `golden`: a stored recording of the baseline (a run directory or trace file) to compare against
    instead of recording the baseline; only the candidate is then recorded. parity/golden/ finds it
    under `pair.golden.dir` for the current environment. `tolerance` overrides the pair's loss tolerance.
    """
    pair = load(pair)
    runs = run_pair(pair, baseline=str(golden) if golden is not None else None, steps=steps, device=device,
                    runs_dir=runs_dir, repeat=False if golden is not None else None)
    comparison = compare(runs.baseline, runs.candidate, tolerance=_loss_tolerance(tolerances(pair, tolerance)),
                         baseline_repeat=runs.baseline_repeat, ignore_args=pair.ignore_args)
    return GateResult(pair, comparison, gate_failures(pair, comparison), runs)


def _on_cuda(*traces: Trace) -> bool:
    """Whether any side ran on a GPU: its Reproduce block then installs without the CPU torch pin."""
    return any(str(t.header.get("meta", {}).get("device", "")).startswith("cuda") for t in traces)


def report(pair: str | Path | Pair | None = None, *, baseline: str | None = None, candidate: str | None = None,
           command: Sequence[str] | None = None, repeat: bool | str | None = None, steps: int | None = None,
           device: str = "cpu", runs_dir: str | Path = "runs", tolerance: Tolerance | None = None,
           invocation: Sequence[str] | None = None) -> ReportResult:
    """Record what needs recording, compare, gate a pair's expectations, and gather the Reproduce block.

    `repeat`: True records the baseline twice, a path names a second recording of it, None follows
    the pair file. `invocation`: the parity command line after `parity`, for the Reproduce block
    (None when called in-process: the block then says so).
    """
    pair = load(pair) if pair is not None else None
    repeat_dir = repeat if isinstance(repeat, (str, Path)) else None
    runs = run_pair(pair, baseline=baseline, candidate=candidate, command=command, steps=steps, device=device,
                    runs_dir=runs_dir, repeat=False if repeat_dir else repeat)
    if repeat_dir:
        runs = dataclasses.replace(runs, baseline_repeat=Path(repeat_dir))
    c, base, cand = compare_with_traces(runs.baseline, runs.candidate,
                                        tolerance=_loss_tolerance(tolerances(pair, tolerance)),
                                        baseline_repeat=runs.baseline_repeat,
                                        ignore_args=pair.ignore_args if pair else frozenset())
    # Pair sides, git:REV sides and `--repeat` are recorded by this command; given run directories are not.
    records_runs = repeat is True or any(spec is None or spec.startswith(GIT_PREFIX) for spec in (baseline, candidate))
    from parity.report.reproduce import reproduce_block

    commands = reproduce_block([runs.baseline, runs.candidate, runs.baseline_repeat], invocation,
                               records_runs=records_runs, cuda=_on_cuda(base, cand))
    return ReportResult(c, base, cand, runs, commands, pair, gate_failures(pair, c) if pair else None)


def report_runs(baseline: str | Path, candidate: str | Path, *, repeat: str | Path | None = None, rank: int = 0,
                ignore_args: frozenset[str] = frozenset(), tolerance: Tolerance | None = None,
                invocation: Sequence[str] | None = None) -> ReportResult:
    """`report` for two runs already recorded (`parity compare`): nothing is recorded, any rank can be read."""
    c, base, cand = compare_with_traces(baseline, candidate, tolerance=tolerance, baseline_repeat=repeat, rank=rank,
                                        ignore_args=ignore_args)
    from parity.report.reproduce import reproduce_block

    commands = reproduce_block([baseline, candidate, repeat], invocation, cuda=_on_cuda(base, cand))
    runs = PairRuns(Path(baseline), Path(candidate), Path(repeat) if repeat else None)
    return ReportResult(c, base, cand, runs, commands)


def ablate(pair: str | Path | Pair, *, runs_dir: str | Path = "runs", steps: int | None = None, device: str = "cpu",
           jobs: int = 2, progress: bool = True) -> AblationResult:
    """Each `[[toggle]]` applied alone to the baseline and reverted alone on the candidate (parity.ablate)."""
    from parity.ablate import ablate as run_ablation

    return run_ablation(load(pair), runs_dir=Path(runs_dir), steps=steps, device=device, jobs=jobs, progress=progress)


def resume_check(pair: str | Path | Pair, *, splits: Sequence[int] | None = None, controls: bool = False,
                 double: bool = True, runs_dir: str | Path = "runs", device: str = "cpu") -> ResumeResult:
    """Run the pair's [resume] protocol and return a ResumeResult."""
    from parity.resume.runner import ResumeRunner

    protocol = load(pair).resume_protocol()
    return ResumeRunner(protocol, Path(runs_dir), device).run(splits=list(splits) if splits else None, double=double,
                                                              controls=controls)
