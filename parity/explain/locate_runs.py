"""`parity locate` orchestration: find the first divergent step, re-run both sides with deep capture of
that step, walk the captures, and re-run under trial settings to see whether the divergence goes away.

Every run goes through sides.record_side (setup commands, failures as exit 2, logs); the walk itself is
parity.explain.locate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from parity.capture import config as cfg
from parity.capture.launch import load_provenance
from parity.exceptions import BaselineError, UsageError
from parity.explain.locate import DeepPair, describe, locate_files
from parity.pairs import Pair, Side
from parity.sides import record_side
from parity.trace import deep as ds

#: The ladder `--try-settings` climbs: each setting alone, both sides re-run in full under it.
TRY_SETTINGS = (("strict deterministic (torch.use_deterministic_algorithms(True), no warn-only)", {}, True),
                ("CUBLAS_WORKSPACE_CONFIG=:4096:8", {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}, False),
                ("NVIDIA_TF32_OVERRIDE=0 (no TF32 anywhere)", {"NVIDIA_TF32_OVERRIDE": "0"}, False))

# Outcomes of a trial (`SettingTrial.outcome`).
NO_DIVERGENCE = "no divergence"
DIVERGES = "diverges"
FAILS = "run fails"


@dataclass(frozen=True)
class Setting:
    """A variation both sides are re-run under: extra environment, and/or strict deterministic algorithms."""

    label: str
    env: Mapping[str, str]
    strict: bool = False

    def apply(self, side: Side) -> Side:
        extra = {cfg.ENV_STRICT_DETERMINISTIC: "1"} if self.strict else {}
        return dataclasses.replace(side, env={**side.env, **self.env, **extra})


def requested_settings(env: Sequence[str], strict: bool, try_settings: bool) -> list[Setting]:
    """`--env K=V ...` and `--strict-deterministic` as one setting, then the `--try-settings` ladder."""
    pairs = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r}: write KEY=VALUE, e.g. --env CUBLAS_WORKSPACE_CONFIG=:4096:8")
        pairs[key] = value
    settings = []
    if pairs or strict:
        parts = [f"{k}={v}" for k, v in pairs.items()] + (["strict deterministic"] if strict else [])
        settings.append(Setting(", ".join(parts), pairs, strict))
    if try_settings:
        settings += [Setting(label, values, strict_) for label, values, strict_ in TRY_SETTINGS]
    return settings


@dataclass(frozen=True)
class SettingTrial:
    """Both sides re-run in full under one setting, and what became of the divergence."""

    setting: Setting
    outcome: str
    step: int | None = None
    channel: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"setting": self.setting.label, "env": dict(self.setting.env), "strict_deterministic": self.setting.strict,
                "outcome": self.outcome, "step": self.step, "channel": self.channel, "detail": self.detail}


@dataclass(frozen=True)
class LocateResult:
    """What `parity locate` found; never printed here (parity.report.locate_report renders it)."""

    labels: tuple[str, str]
    runs: tuple[Path, Path]
    """The two recorded runs whose comparison chose the step."""
    first_divergence: dict | None
    step: int | None
    """The deep-captured step (None: nothing diverged and no --step was given)."""
    step_source: str
    deep: DeepPair | None
    trials: tuple[SettingTrial, ...]
    device: str
    """The device the baseline ran on, as its trace names it ("cpu", "NVIDIA H200")."""
    commands: tuple[str, ...]

    @property
    def located(self) -> bool:
        return self.deep is not None and self.deep.location is not None

    def to_json(self) -> dict[str, Any]:
        # The top-level module/op/phase/diagnosis are the Explanation section's contract (report/explanation.py).
        location = self.deep.location if self.deep is not None else None
        where = describe(location.record) if location is not None else {}
        return {"kind": "locate", "module": where.get("module"), "op": where.get("op"), "phase": where.get("phase"),
                "diagnosis": location.explanation if location is not None else None,
                "status": "LOCATED" if self.located else "NO_DIFFERING_OP", "labels": list(self.labels),
                "runs": [str(p) for p in self.runs], "first_divergence": self.first_divergence, "step": self.step,
                "step_source": self.step_source, "device": self.device,
                "deep": None if self.deep is None else self.deep.to_json(),
                "trials": [t.to_json() for t in self.trials], "reproduce": list(self.commands)}


def _as_template(parts: Sequence[str], out: str | None) -> tuple[str, ...]:
    """A recorded command as a side template: braces escaped, the old run directory as {out}."""
    escaped = [p.replace("{", "{{").replace("}", "}}") for p in parts]
    return tuple(p.replace(out, "{out}") if out else p for p in escaped)


def side_from_run(run_dir: str | Path, label: str) -> tuple[Side, tuple[str, ...]]:
    """The side that re-runs a recorded run as it was recorded (its run.json), and its skipped loads."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run directory (record one with `parity record --out DIR -- ...`)")
    provenance = load_provenance(run_dir)
    if not provenance or not provenance.get("command"):
        raise UsageError(f"{run_dir}: no run.json with the command that recorded it; locate re-runs recorded "
                          "commands, so record with `parity record` or give --pair NAME")
    out = provenance.get("out")
    setup = (provenance.get("setup") or {}).get("command", ())
    env = {**provenance.get("inherited_env", {}), **provenance.get("env", {})}
    side = Side(name=label, command=_as_template(provenance["command"], out), cwd=Path(provenance.get("cwd", ".")),
                env=env, seed=provenance.get("seed"), deterministic=bool(provenance.get("deterministic")),
                setup=_as_template(setup, out))
    return side, tuple(provenance.get("skip_loads", ()))


@dataclass(frozen=True)
class _Sides:
    """The two commands to re-run, how, and the first comparison's runs."""

    baseline: Side
    candidate: Side
    labels: tuple[str, str]
    runs: tuple[Path, Path]
    steps: int
    skip_loads: tuple[tuple[str, ...], tuple[str, ...]]
    ignore_args: frozenset[str]


def _prepare(pair: Pair | None, baseline: str | None, candidate: str | None, repeat: bool, steps: int | None,
             device: str, root: Path, runs_dir: Path) -> _Sides:
    from parity import session

    if pair is not None:
        base, cand = pair.sides()
        if not repeat:
            runs = session.run_pair(pair, steps=steps, device=device, runs_dir=runs_dir, repeat=False)
            return _Sides(base, cand, ("baseline", "candidate"), (runs.baseline, runs.candidate),
                          base.budget(device, steps), ((), ()), pair.ignore_args)
        # Only the baseline, twice; where and with which cache salt `report` records its repeat, so either reuses the other's.
        first, second = runs_dir / pair.name / "baseline", runs_dir / pair.name / "baseline-repeat"
        for out, label, salt in ((first, "baseline", ""), (second, "baseline (repeat)", "repeat")):
            record_side(base, out, steps=base.budget(device, steps), device=device, label=label,
                        cache_dir=runs_dir / ".cache", salt=salt)
        return _Sides(base, base, ("baseline", "baseline (repeat)"), (first, second), base.budget(device, steps),
                      ((), ()), pair.ignore_args)
    if baseline is None or (candidate is None and not repeat):
        raise UsageError("give two run directories (BASELINE CANDIDATE), one with --repeat, or --pair NAME")
    base, base_skip = side_from_run(baseline, "baseline")
    if repeat:
        second = root / "baseline-repeat"
        record_side(base, second, steps=0, device=device, skip_loads=base_skip, label="baseline (repeat)")
        return _Sides(base, base, ("baseline", "baseline (repeat)"), (Path(baseline), second), 0,
                      (base_skip, base_skip), frozenset())
    cand, cand_skip = side_from_run(candidate, "candidate")
    return _Sides(base, cand, ("baseline", "candidate"), (Path(baseline), Path(candidate)), 0, (base_skip, cand_skip),
                  frozenset())


def _record_all(runs: list[tuple[Side, Path, tuple[str, ...], str]], steps: int, device: str,
                jobs: int) -> list[BaselineError | None]:
    """Record each (side, out, skip_loads, label), `jobs` at a time; per run, the failure or None."""
    from concurrent.futures import ThreadPoolExecutor

    def one(run: tuple[Side, Path, tuple[str, ...], str]) -> BaselineError | None:
        side, out, skip, label = run
        try:
            record_side(side, out, steps=steps, device=device, skip_loads=skip, label=label)
        except BaselineError as exc:
            return exc
        return None
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, runs))


def _deep_runs(sides: _Sides, step: int, device: str, root: Path, jobs: int) -> tuple[Path, Path]:
    """Re-run both sides with deep capture of `step`; each process exits once that step is written."""
    env = {cfg.ENV_DEEP_STEP: str(step), cfg.ENV_DEEP_EXIT: "1"}
    runs = [(dataclasses.replace(side, env={**side.env, **env}), root / name, skip,
             f"{label} with deep capture of step {step}")
            for side, label, skip, name in ((sides.baseline, sides.labels[0], sides.skip_loads[0], "deep-baseline"),
                                            (sides.candidate, sides.labels[1], sides.skip_loads[1], "deep-candidate"))]
    failures = _record_all(runs, sides.steps, device, jobs)
    for failure in failures:
        if failure is not None:
            raise failure
    outs = []
    for _, out, _, label in runs:
        deep_file = out / ds.DEEP_FILE_PATTERN.format(rank=0)
        if not deep_file.is_file():
            raise BaselineError(f"{label}: the re-run finished without reaching step {step} (no {deep_file.name}); "
                                f"output in {out / 'output.log'}")
        outs.append(deep_file)
    return outs[0], outs[1]


def _trials(sides: _Sides, settings: Sequence[Setting], device: str, root: Path, jobs: int) -> tuple[SettingTrial, ...]:
    """Both sides re-run in full under each setting (all runs `jobs` at a time), each pair compared."""
    from parity import session

    runs = [(setting.apply(side), root / f"trial-{i}" / name, skip, f"{label} under {setting.label}")
            for i, setting in enumerate(settings)
            for side, label, skip, name in zip((sides.baseline, sides.candidate), sides.labels, sides.skip_loads,
                                               ("baseline", "candidate"))]
    failures = _record_all(runs, sides.steps, device, jobs)
    trials = []
    for i, setting in enumerate(settings):
        failed = [f for f in failures[2 * i:2 * i + 2] if f is not None]
        if failed:
            lines = [line.strip() for line in str(failed[0]).splitlines() if line.strip()]
            errors = [line for line in lines if "Error" in line]
            trials.append(SettingTrial(setting, FAILS, detail=(errors or lines)[-1][:500]))
            continue
        comparison = session.compare(runs[2 * i][1], runs[2 * i + 1][1], ignore_args=sides.ignore_args)
        found = comparison.first_divergence
        if found is None:
            trials.append(SettingTrial(setting, NO_DIVERGENCE, detail=f"verdict {comparison.verdict}"))
        else:
            trials.append(SettingTrial(setting, DIVERGES, found.get("step"), found.get("channel"),
                                       found.get("diagnosis", "")))
    return tuple(trials)


#: Deep re-runs at most, when re-runs diverge before the captured step (nondeterminism striking earlier).
MAX_ATTEMPTS = 3


def _earlier_divergence(found: DeepPair, deep_files: tuple[Path, Path], step: int,
                        ignore_args: frozenset[str]) -> int | None:
    """The step at which the deep re-runs themselves first diverged, when that is before `step` and the walk
    could only say that the step started from different parameters."""
    from parity import session
    from parity.explain.locate import STARTING_STATE

    if found.location is None or found.location.cause != STARTING_STATE:
        return None
    first = session.compare(deep_files[0].parent, deep_files[1].parent, ignore_args=ignore_args).first_divergence
    earlier = (first or {}).get("step")
    return earlier if earlier is not None and earlier < step else None


def _steps_and_device(run: Path) -> tuple[int, str]:
    from parity.trace.reader import load_run

    trace = load_run(run).primary
    return len(trace.steps), str(trace.header.get("meta", {}).get("device") or "cpu")


def locate(pair: Pair | None = None, *, baseline: str | None = None, candidate: str | None = None,
           repeat: bool = False, step: int | None = None, steps: int | None = None, device: str = "cpu",
           runs_dir: str | Path = "runs", settings: Sequence[Setting] = (), jobs: int = 2,
           invocation: Sequence[str] | None = None) -> LocateResult:
    """Find the step (first divergence, or `step`), deep-capture it on both sides, walk, and try `settings`."""
    from parity import session
    from parity.report.reproduce import reproduce_block

    runs_dir = Path(runs_dir)
    root = runs_dir / (pair.name if pair else "adhoc") / "locate"
    sides = _prepare(pair, baseline, candidate, repeat, steps, device, root, runs_dir)
    comparison = session.compare(sides.runs[0], sides.runs[1], ignore_args=sides.ignore_args)
    first = comparison.first_divergence
    available, device_name = _steps_and_device(sides.runs[0])
    if step is not None and step >= available:
        raise UsageError(f"--step {step}: {sides.runs[0]} recorded {available} steps (0..{available - 1})")
    chosen, source = (step, "--step") if step is not None else ((first or {}).get("step"), "first divergence")
    if chosen is None:
        trials = _trials(sides, settings, device, root, jobs)
        return LocateResult(sides.labels, sides.runs, first, None, "no divergence", None, trials, device_name,
                            tuple(reproduce_block([], invocation)))
    for _ in range(MAX_ATTEMPTS):
        deep_files = _deep_runs(sides, chosen, device, root, jobs)
        try:
            found = locate_files(*deep_files)
        except ds.DeepFileError as exc:
            raise BaselineError(str(exc)) from None
        earlier = _earlier_divergence(found, deep_files, chosen, sides.ignore_args)
        if earlier is None:
            break
        # Nondeterminism struck earlier in these re-runs than in the recorded ones: capture that step instead.
        chosen, source = earlier, f"first divergence of the re-runs (the recorded runs diverged at {chosen})"
    trials = _trials(sides, settings, device, root, jobs)
    commands = reproduce_block([f.parent for f in deep_files], invocation, records_runs=True, cuda=device == "cuda")
    return LocateResult(sides.labels, sides.runs, first, chosen, source, found, trials, device_name, tuple(commands))


__all__ = ["DIVERGES", "FAILS", "LocateResult", "NO_DIVERGENCE", "Setting", "SettingTrial", "TRY_SETTINGS", "locate",
           "requested_settings", "side_from_run"]
