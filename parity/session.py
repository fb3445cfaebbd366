"""The facade: record, compare, report, gate, ablate, resume-check. The CLI and the pytest plugin are thin shells over it.

Every call takes a `Pair` (or a pair name or path) and plain values, returns a result dataclass from
`parity.results`, never prints a report and never chooses an exit code: the front ends render and decide.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from parity.capture.launch import RecordResult, record_command
from parity.checks.base import Tolerance
from parity.checks.compare import Comparison, compare_traces
from parity.exceptions import ConfigError
from parity.pairs import VERDICT, Pair, Side, load_pair
from parity.checks.ranks import check_rank_consistency, check_sharded, compare_each_rank
from parity.results import (AblationResult, CalibrationResult, GateFailure, GateResult, GoldenResult, PairRuns,
                            RanksResult, ReportResult, ResumeResult)
from parity.sides import GIT_PREFIX, WORKING_TREE, record_side, resolve_side
from parity.trace.reader import Run, Trace, load_run

if TYPE_CHECKING:  # the explain commands import git and more: only when they run
    from parity.explain.bisect import BisectResult

__all__ = ["GateFailure", "GateResult", "PairRuns", "RanksResult", "ReportResult", "ablate", "compare", "compare_ranks",
           "compare_sharded", "compare_with_traces", "gate",
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
            baseline_repeat: str | Path | None = None, rank: int = 0, ignore_args: frozenset[str] = frozenset(),
            tolerances: Mapping[str, Tolerance] | None = None) -> Comparison:
    """Compare two recorded runs (rank `rank` of each); `tolerances` maps check names to tolerances."""
    return compare_with_traces(baseline, candidate, tolerance=tolerance, baseline_repeat=baseline_repeat, rank=rank,
                               ignore_args=ignore_args, tolerances=tolerances)[0]


def compare_with_traces(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance | None = None,
                        baseline_repeat: str | Path | None = None, rank: int = 0,
                        ignore_args: frozenset[str] = frozenset(),
                        tolerances: Mapping[str, Tolerance] | None = None) -> tuple[Comparison, Trace, Trace]:
    """Like `compare`, also returning the two traces it read (reports need them; traces are read once)."""
    base, cand = _trace_of(load_run(baseline), rank), _trace_of(load_run(candidate), rank)
    repeat = _trace_of(load_run(baseline_repeat), rank) if baseline_repeat else None
    c = compare_traces(base, cand, tolerance=tolerance or Tolerance(), baseline_repeat=repeat, ignore_args=ignore_args,
                       tolerances=tolerances)
    return c, base, cand


def compare_ranks(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance | None = None,
                  ignore_args: frozenset[str] = frozenset(),
                  tolerances: Mapping[str, Tolerance] | None = None) -> RanksResult:
    """Every rank of two runs of one world size compared (a ConfigError otherwise), and each run's replicas."""
    base, cand = load_run(baseline), load_run(candidate)
    comparisons = compare_each_rank(base, cand, tolerance=tolerance or Tolerance(), ignore_args=ignore_args,
                                    tolerances=tolerances)
    return RanksResult(comparisons, {"baseline": check_rank_consistency(base), "candidate": check_rank_consistency(cand)})


def compare_sharded(baseline: str | Path, candidate: str | Path, *, tolerance: Tolerance | None = None) -> RanksResult:
    """One training under two layouts (1 process against N FSDP2 ranks): losses within `tolerance` (default: the
    measured `ranks.SHARDED_LOSS_TOLERANCE`), lr exact, layout-independent parameter sums; and each run's replicas."""
    base, cand = load_run(baseline), load_run(candidate)
    return RanksResult({}, {"baseline": check_rank_consistency(base), "candidate": check_rank_consistency(cand)},
                       check_sharded(base, cand, tolerance))


def tolerances(pair: Pair | None, override: Tolerance | None = None) -> dict[str, Tolerance]:
    """Check name -> tolerance for one run: the pair file's `[tolerance]`, with `--tolerance` (loss) over it.

    The one place gate, report and the pytest items get their tolerances from, so that they agree."""
    chosen = dict(pair.tolerances) if pair else {}
    if override is not None:
        chosen["loss"] = override
    return chosen


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
            dirs[name] = resolve_side(spec, fallback=side, out=out, steps=steps, device=device, cache_dir=cache_dir)
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
         tolerance: Tolerance | None = None, golden: bool | str | Path | None = None,
         update_golden: bool = False) -> GateResult:
    """Record the pair (cached), compare with the pair's tolerances, and judge its expectations.

    `golden=True`: compare the candidate with the pair's stored golden for the candidate's environment
    (only the candidate is recorded; see `_gate_on_golden`). `golden="auto"`: the same where a golden of
    this environment is stored, else both sides are recorded (`GateResult.golden_note` says which and
    why): the pytest items' default, so that a machine with another CPU or torch still gates, on a
    fresh baseline instead of a foreign golden. `golden=PATH`: a recording of the baseline (run
    directory or trace file) to compare against instead. `update_golden`: re-record the baseline and
    rewrite its golden on purpose first. `tolerance` overrides the pair's loss tolerance.
    """
    pair = load(pair)
    if golden == AUTO_GOLDEN and not update_golden:
        return _gate_auto(pair, steps=steps, device=device, runs_dir=runs_dir, tolerance=tolerance)
    if golden is True or update_golden:
        return _gate_on_golden(pair, steps=steps, device=device, runs_dir=runs_dir, tolerance=tolerance,
                               update=update_golden)
    runs = run_pair(pair, baseline=str(golden) if golden is not None else None, steps=steps, device=device,
                    runs_dir=runs_dir, repeat=False if golden is not None else None)
    comparison = compare(runs.baseline, runs.candidate, tolerances=tolerances(pair, tolerance),
                         baseline_repeat=runs.baseline_repeat, ignore_args=pair.ignore_args)
    return GateResult(pair, comparison, gate_failures(pair, comparison), runs)


#: `gate(golden=AUTO_GOLDEN)`: the stored golden of this environment where there is one, else both sides.
AUTO_GOLDEN = "auto"


def _gate_auto(pair: Pair, *, steps: int | None, device: str, runs_dir: str | Path,
               tolerance: Tolerance | None) -> GateResult:
    """The golden gate where a golden of the candidate's environment is stored, else the two-sided gate."""
    from parity.golden.envid import environment_id
    from parity.golden.store import list_environments

    candidate = _record_side_alone(pair, "candidate", steps=steps, device=device, runs_dir=runs_dir)
    env = environment_id(candidate.header.get("meta") or {})
    stored = list_environments(pair.golden.dir, pair.name)
    if env in stored and steps is None:
        return _gate_on_golden(pair, steps=steps, device=device, runs_dir=runs_dir, tolerance=tolerance, update=False)
    result = gate(pair, steps=steps, device=device, runs_dir=runs_dir, tolerance=tolerance)
    why = (f"--steps {steps} differs from the golden's budget" if env in stored else
           f"no golden for {env}" + (f" (stored: {', '.join(stored)})" if stored else ""))
    return dataclasses.replace(result, golden_note=f"{why}: the baseline was recorded")


def _on_cuda(*traces: Trace) -> bool:
    """Whether any side ran on a GPU: its Reproduce block then installs without the CPU torch pin."""
    # The header names the device torch ran on: "cpu", or the GPU's name ("NVIDIA H200").
    return any(str(t.header.get("meta", {}).get("device") or "cpu") != "cpu" for t in traces)


def report(pair: str | Path | Pair | None = None, *, baseline: str | None = None, candidate: str | None = None,
           command: Sequence[str] | None = None, repeat: bool | str | None = None, steps: int | None = None,
           device: str = "cpu", runs_dir: str | Path = "runs", tolerance: Tolerance | None = None,
           invocation: Sequence[str] | None = None, explain: Sequence[str | Path] = (), attribute: bool = False,
           jobs: int = 2) -> ReportResult:
    """Record what needs recording, compare, gate a pair's expectations, and gather the Reproduce block.

    `repeat`: True records the baseline twice, a path names a second recording of it, None follows
    the pair file. `invocation`: the parity command line after `parity`, for the Reproduce block
    (None when called in-process: the block then says so). `explain`: JSON files written by
    `parity locate|bisect|attribute --format json -o FILE`, and `attribute`: run the attribution here
    (`jobs` runs at once); both fill the report's Explanation section.
    """
    from parity.report.explanation import load_explanation, reproduce_line

    explanations = [load_explanation(path) for path in explain]  # a bad file fails before anything runs
    if attribute and pair is None and not (baseline and candidate and Path(baseline).is_dir() and Path(candidate).is_dir()):
        raise ConfigError("--attribute: give --pair NAME, or run directories as --baseline and --candidate "
                          "(attribution re-runs their recorded commands)", docs="README.md#commands")
    pair = load(pair) if pair is not None else None
    repeat_dir = repeat if isinstance(repeat, (str, Path)) else None
    runs = run_pair(pair, baseline=baseline, candidate=candidate, command=command, steps=steps, device=device,
                    runs_dir=runs_dir, repeat=False if repeat_dir else repeat)
    if repeat_dir:
        runs = dataclasses.replace(runs, baseline_repeat=Path(repeat_dir))
    c, base, cand = compare_with_traces(runs.baseline, runs.candidate, tolerances=tolerances(pair, tolerance),
                                        baseline_repeat=runs.baseline_repeat,
                                        ignore_args=pair.ignore_args if pair else frozenset())
    # Pair sides, git:REV sides and `--repeat` are recorded by this command; given run directories are not.
    records_runs = repeat is True or any(spec is None or spec == WORKING_TREE or spec.startswith(GIT_PREFIX)
                                         for spec in (baseline, candidate))
    from parity.report.reproduce import reproduce_block

    commands = reproduce_block([runs.baseline, runs.candidate, runs.baseline_repeat], invocation,
                               records_runs=records_runs, cuda=_on_cuda(base, cand))
    # The explanation files the report reads are written again before the report's own line.
    commands[-1:-1] = [reproduce_line(data, path) for data, path in zip(explanations, explain)]
    if attribute:
        from parity.explain.attribute import attribute as attribute_settings

        explanations.append(attribute_settings(pair, baseline_dir=None if pair else Path(baseline),
                                               candidate_dir=None if pair else Path(candidate), runs_dir=Path(runs_dir),
                                               steps=steps, device=device, jobs=jobs).to_json())
    return ReportResult(c, base, cand, runs, commands, pair, gate_failures(pair, c) if pair else None, explanations)


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


# -- goldens and calibration ----------------------------------------------------------------------------
def _provenance_inputs(pair: Pair) -> dict[str, str | None]:
    import hashlib

    from parity.sides import code_revision

    return {"pair_file_hash": hashlib.sha256(pair.path.read_bytes()).hexdigest()[:16],
            "code_revision": code_revision(pair.path.parent)}


def _record_side_alone(pair: Pair, which: str, *, steps: int | None, device: str, runs_dir: str | Path,
                       out: Path | None = None, salt: str = "") -> Trace:
    side = pair.baseline if which == "baseline" else pair.candidate
    out = out or Path(runs_dir) / pair.name / which
    record_side(side, out, steps=side.budget(device, steps), device=device, cache_dir=Path(runs_dir) / ".cache",
                salt=salt)
    return load_run(out).primary


def golden_save(pair: str | Path | Pair, *, steps: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs",
                update: bool = False) -> GoldenResult:
    """Record the pair's baseline and store it as the golden for the environment it ran in.

    An existing golden is rewritten only with `update=True` (then `change_summary` says what changed,
    per channel); otherwise refused, so that a golden is never replaced by accident."""
    from parity.golden.envid import environment_id
    from parity.golden.store import list_environments, load_golden, save_golden
    from parity.golden.summary import golden_change_summary

    pair = load(pair)
    trace = _record_side_alone(pair, "baseline", steps=steps, device=device, runs_dir=runs_dir)
    env = environment_id(trace.header.get("meta") or {})
    old = None
    if env in list_environments(pair.golden.dir, pair.name):
        if not update:
            raise ConfigError(f"{pair.golden.dir / pair.name / env}: a golden of {pair.name} for {env} exists; "
                              f"rewrite it on purpose with `parity golden update --pair {pair.name}`",
                              docs="README.md#use-it-in-ci")
        old, _ = load_golden(pair.golden.dir, pair.name, env)
    path = save_golden(trace, pair.golden.dir, pair_name=pair.name, **_provenance_inputs(pair))
    summary = golden_change_summary(old, trace) if old is not None else None
    return GoldenResult(pair.name, env, path, created=old is None, updated=old is not None, change_summary=summary)


def _gate_on_golden(pair: Pair, *, steps: int | None, device: str, runs_dir: str | Path,
                    tolerance: Tolerance | None, update: bool) -> GateResult:
    """Only the candidate runs; it is compared with the golden of its own environment.

    A missing golden is created from a fresh baseline run and the gate FAILS that first time (a golden
    is never accepted silently). Where the golden's provenance differs from the candidate's (another
    torch, other deterministic flags), bitwise expectations do not hold: the comparison falls back to
    the calibrated bands stored with the golden, and without bands the gate fails saying which field
    differs, instead of failing on noise or passing blindly."""
    from parity.exceptions import GoldenMissingError
    from parity.golden.envid import environment_id, provenance_from_header, provenance_mismatches
    from parity.golden.store import load_bands, load_golden

    saved = golden_save(pair, steps=steps, device=device, runs_dir=runs_dir, update=True) if update else None
    candidate = _record_side_alone(pair, "candidate", steps=steps, device=device, runs_dir=runs_dir)
    env = environment_id(candidate.header.get("meta") or {})
    cand_dir = Path(runs_dir) / pair.name / "candidate"
    try:
        golden, provenance = load_golden(pair.golden.dir, pair.name, env)
    except GoldenMissingError:
        created = golden_save(pair, steps=steps, device=device, runs_dir=runs_dir)
        golden, _ = load_golden(pair.golden.dir, pair.name, created.environment)
        comparison = compare_traces(golden, candidate, tolerances=tolerances(pair, tolerance), ignore_args=pair.ignore_args)
        missing = GateFailure("golden", "stored", "missing", None,
                              f"no golden of {pair.name} for environment {env}: created {created.path} from the "
                              "baseline; review it, commit it and run the gate again", "a golden is never accepted silently")
        return GateResult(pair, comparison, [missing, *gate_failures(pair, comparison)],
                          PairRuns(created.path, cand_dir), created)
    mismatches = provenance_mismatches(provenance, provenance_from_header(candidate.header, **_provenance_inputs(pair)))
    bands = load_bands(pair.golden.dir, pair.name, env)
    use_bands = bands if bands is not None and (mismatches or not bands.deterministic) else None
    comparison = compare_traces(golden, candidate, tolerances=tolerances(pair, tolerance), ignore_args=pair.ignore_args,
                                bands=use_bands)
    failures = gate_failures(pair, comparison)
    if mismatches and use_bands is None:
        failures.insert(0, GateFailure("golden", "matching provenance", "; ".join(mismatches), None,
                                       "bitwise expectations hold only where provenance matches, and no calibrated band "
                                       f"is stored to fall back on: run `parity calibrate --pair {pair.name}` or save a "
                                       "golden for this environment", "provenance differs"))
    info = GoldenResult(pair.name, env, pair.golden.dir / pair.name / env, updated=saved is not None,
                        provenance_mismatches=mismatches, change_summary=saved.change_summary if saved else None,
                        banded=use_bands is not None)
    return GateResult(pair, comparison, failures, PairRuns(info.path, cand_dir), info)


def calibrate(pair: str | Path | Pair, *, repeats: int = 3, jobs: int = 2, steps: int | None = None, device: str = "cpu",
              runs_dir: str | Path = "runs") -> CalibrationResult:
    """Record the baseline `repeats` times (in parallel, `jobs` at once) and store the per-step bands they
    span beside the pair's golden for that environment."""
    from concurrent.futures import ThreadPoolExecutor

    from parity.checks.bands import compute_bands
    from parity.golden.envid import environment_id
    from parity.golden.store import save_bands

    if repeats < 2:
        raise ConfigError(f"--repeats {repeats}: a band needs at least 2 runs of the baseline", docs="README.md#use-it-in-ci")
    pair = load(pair)
    outs = [Path(runs_dir) / pair.name / "calibrate" / f"run-{i}" for i in range(repeats)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        traces = list(pool.map(lambda iv: _record_side_alone(pair, "baseline", steps=steps, device=device,
                                                             runs_dir=runs_dir, out=iv[1], salt=f"calibrate-{iv[0]}"),
                               enumerate(outs)))
    envs = {environment_id(t.header.get("meta") or {}) for t in traces}
    if len(envs) != 1:
        raise ConfigError(f"{pair.name}: the calibration runs recorded different environments ({sorted(envs)})")
    bands = compute_bands(traces)
    env = envs.pop()
    path = save_bands(bands, pair.golden.dir, pair.name, env)
    return CalibrationResult(pair.name, env, repeats, bands.deterministic,
                             {c: bands.width(c) for c in ("loss", "grad_norm", "lr_schedule")}, bands.digests_stable,
                             path, outs)


def bisect(pair: str | Path | Pair, *, good: str, bad: str, side: str = "candidate", repo: str | Path | None = None,
           steps: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs",
           tolerance: Tolerance | None = None) -> BisectResult:
    """The first commit in `good..bad` at which `side` of the pair stops training like it does at `good`
    (parity.explain.bisect), judged with the pair's tolerances and `tolerance` (loss) over them."""
    from parity.explain.bisect import bisect as run_bisect

    pair = load(pair)
    return run_bisect(pair, good=good, bad=bad, side=side, repo=repo, steps=steps, device=device, runs_dir=runs_dir,
                      tolerances=tolerances(pair, tolerance), tolerance=tolerance)


def features(a: str | Path | None = None, b: str | Path | None = None, *, pair: str | Path | Pair | None = None,
             steps: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs", test_mode: bool = True,
             test_timeout: float = 300.0, resume: bool = True, throughput: str | Path | None = None,
             same_stream_pair: str | Path | Pair | None = None, invocation: Sequence[str] | None = None):
    """The feature matrix of two runs (parity.features): recorded run directories `a` and `b`, or both sides of
    `pair` recorded as `report` records them, plus the pair's [resume] protocol where it declares one.
    `same_stream_pair`: a pair of the same trainers fed one token stream, recorded too; its numerics are
    added to the matrix (the question whether the trainers train alike on the same tokens)."""
    from parity.features.build import build_matrix, read_throughput, side_label
    from parity.report.reproduce import reproduce_block

    bench = read_throughput(throughput)
    resume_result, sides = None, (False, False)
    if pair is not None:
        pair = load(pair)
        runs = run_pair(pair, steps=steps, device=device, runs_dir=runs_dir, repeat=False)
        a, b = runs.baseline, runs.candidate
        if pair.resume is not None and resume:
            resume_result = resume_check(pair, runs_dir=runs_dir, device=device)
            entry = _entry_point(pair.resume.run)
            sides = tuple(entry is not None and _entry_point(s.command) == entry for s in pair.sides())
        elif pair.resume is not None:
            resume_result = "skipped (--no-resume)"
    if a is None or b is None:
        raise ConfigError("give two run directories (A B) or --pair NAME")
    same_stream = None
    if same_stream_pair is not None:
        stream = load(same_stream_pair)
        stream_runs = run_pair(stream, steps=steps, device=device, runs_dir=runs_dir, repeat=False)
        same_stream = (stream.name, stream_runs.baseline, stream_runs.candidate)
    commands = reproduce_block([a, b, *(same_stream[1:] if same_stream else ())], invocation,
                               records_runs=pair is not None or same_stream is not None,
                               cuda=device == "cuda")
    if throughput is not None:
        commands.insert(-1, f"# {throughput}: the JSON the throughput benchmark wrote (its own Reproduce line "
                            "is printed with its table)")
    labels = None
    if pair is not None:
        labels = tuple(f"{name}: {side_label(Path(d), load_run(d).primary)}" for name, d in (("baseline", a), ("candidate", b)))
    return build_matrix(a, b, labels=labels, test_mode=test_mode, test_timeout=test_timeout, resume=resume_result,
                        resume_sides=sides, throughput=bench, same_stream=same_stream, reproduce=commands)


def _entry_point(command: Sequence[str]) -> str | None:
    """The trainer a command runs: its first `.py` script, or the module after `-m`."""
    for i, part in enumerate(command):
        if part.endswith(".py"):
            return part
        if part == "-m" and i + 1 < len(command):
            return command[i + 1]
    return None


def attribute(pair: str | Path | Pair | None = None, *, baseline: str | Path | None = None,
              candidate: str | Path | None = None, runs_dir: str | Path = "runs", steps: int | None = None,
              device: str = "cpu", jobs: int = 2, progress: bool = True):
    """Each setting that differs between the sides set back alone on the candidate, then all together, from the
    recorded option tables (no [[toggle]] tables; parity.explain.attribute). Give a pair, or two run directories."""
    from parity.explain.attribute import attribute as run_attribution

    return run_attribution(load(pair) if pair is not None else None, baseline_dir=Path(baseline) if baseline else None,
                           candidate_dir=Path(candidate) if candidate else None, runs_dir=Path(runs_dir), steps=steps,
                           device=device, jobs=jobs, progress=progress)


def locate(pair: str | Path | Pair | None = None, *, baseline: str | None = None, candidate: str | None = None,
           repeat: bool = False, step: int | None = None, steps: int | None = None, device: str = "cpu",
           runs_dir: str | Path = "runs", env: Sequence[str] = (), strict_deterministic: bool = False,
           try_settings: bool = False, jobs: int = 2, invocation: Sequence[str] | None = None):
    """The first op whose outputs differ at the first divergent step (or `step`), from deep re-runs of both sides
    (parity.explain.locate_runs); `env`/`strict_deterministic`/`try_settings` re-run both sides under those settings,
    `jobs` runs at a time."""
    from parity.explain.locate_runs import locate as run_locate, requested_settings

    settings = requested_settings(env, strict_deterministic, try_settings)
    return run_locate(load(pair) if pair is not None else None, baseline=baseline, candidate=candidate, repeat=repeat,
                      step=step, steps=steps, device=device, runs_dir=runs_dir, settings=settings, jobs=jobs,
                      invocation=invocation)
