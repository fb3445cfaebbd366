"""`parity ablate`: which of several differences between two sides changes training, one at a time.

For every named toggle of a pair file it records (a) the baseline with that one change applied and
(b) the candidate with that one change reverted, and compares each with its counterpart. Runs are
independent: they execute in parallel up to `jobs`, and the record cache (keyed by command,
environment, seed and code revision) means a second ablation reruns nothing it already has.
"""

from __future__ import annotations

import concurrent.futures
import math
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from parity.checks.base import rel_diff
from parity.checks.compare import compare_traces
from parity.exceptions import BaselineError, ConfigError
from parity.pairs import Metrics, Pair, Side, Toggle
from parity.results import AblationResult, ToggleResult
from parity.sides import record_side
from parity.trace.reader import Trace, load_run
from parity.trace.records import step_views


def read_metrics(metrics: Metrics, run_dir: Path) -> dict[str, float | None]:
    """The last value of each of `metrics.keys` in the JSON-lines file a run wrote (None when absent)."""
    path = Path(metrics.file.format(out=run_dir.resolve()))
    values: dict[str, float | None] = {k: None for k in metrics.keys}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        for k in metrics.keys:
            if isinstance(record, dict) and isinstance(record.get(k), (int, float)):
                values[k] = float(record[k])
    return values


def load_toggles(pair: Pair) -> tuple[tuple[Toggle, ...], Metrics | None]:
    """The pair's toggles and metrics file; ConfigError when it declares no toggle."""
    if not pair.toggles:
        raise ConfigError(f"{pair.path}: no [[toggle]] tables; list each difference with the arguments that spell it")
    return pair.toggles, pair.metrics


def stability(trace: Trace) -> dict[str, Any]:
    """Largest pre-clip gradient norm and the first step with a non-finite loss: the instability signals."""
    steps = step_views(trace)
    norms = [s.grad_norm.as_float() for s in steps if s.grad_norm is not None]
    finite = [n for n in norms if math.isfinite(n)]
    bad = next((s.index for s in steps for loss in s.losses if not math.isfinite(loss.as_float())), None)
    return {"max_grad_norm": max(finite) if finite else None, "first_nonfinite_loss_step": bad}


def final_loss(trace: Trace, tail: float = 0.1) -> float | None:
    """Mean loss over the last 10% of steps: less sensitive to one noisy batch than the last value."""
    losses = [s.first_loss.as_float() for s in step_views(trace) if s.first_loss is not None]
    if not losses:
        return None
    n = max(1, int(len(losses) * tail))
    return sum(losses[-n:]) / n


def _with_args(side: Side, extra: list[str], label: str) -> Side:
    return replace(side, name=label, command=(*side.command, *extra))


#: Run label -> (side to record, cache salt): every run an ablation-like analysis records.
Plan = Mapping[str, tuple[Side, str]]


def noise_runs(baseline: Side, candidate: Side) -> dict[str, tuple[Side, str]]:
    """Each side recorded twice: changes applied to the baseline are judged against the baseline's own
    run-to-run noise, reverted ones against the candidate's (another setup, e.g. workers or checkpointing,
    may have other noise); never blame a change for noise its counterpart shows by itself."""
    return {"baseline": (baseline, ""), "candidate": (candidate, ""), "baseline-repeat": (baseline, "repeat"),
            "candidate-repeat": (candidate, "repeat")}


def record_plan(plan: Plan, *, root: Path, runs_dir: Path, steps: int | None, device: str, jobs: int, progress: bool,
                desc: str = "parity ablate", keep_going: bool = False) -> tuple[dict[str, Trace], dict[str, str]]:
    """Record every run of `plan` under `root/<label>` (in parallel, cached) and load each one's trace.

    Returns (traces, failures). A run that fails raises (exit 2) unless `keep_going`: its error then lands in
    `failures` under its label and the other runs go on."""
    cache = Path(runs_dir) / ".cache"

    def run(label: str) -> tuple[str, Trace | None, str | None]:
        side, salt = plan[label]
        try:
            record_side(side, root / label, steps=side.budget(device, steps), device=device, cache_dir=cache, salt=salt,
                        label=label)
        except BaselineError as exc:
            if not keep_going:
                raise
            return label, None, " ".join(str(exc).split())
        return label, load_run(root / label).primary, None

    traces: dict[str, Trace] = {}
    failures: dict[str, str] = {}
    bar = _progress(len(plan), progress, desc)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for label, trace, error in (f.result() for f in concurrent.futures.as_completed([pool.submit(run, k) for k in plan])):
            if trace is not None:
                traces[label] = trace
            else:
                failures[label] = error or "failed"
            bar.update(1)
    bar.close()
    return traces, failures


def loss_effect(finals: Mapping[str, float | None], reference: str, run: str) -> float | None:
    """Relative change of final loss from `reference` to `run` (None where either has no loss)."""
    if finals.get(reference) is None or finals.get(run) is None:
        return None
    return (finals[run] - finals[reference]) / abs(finals[reference] or 1)


def noise_floor(finals: Mapping[str, float | None], run: str, repeat: str) -> float | None:
    """A side's own run-to-run spread of final loss (relative), from its two recordings."""
    if finals.get(run) is None or finals.get(repeat) is None:
        return None
    return rel_diff(finals[run], finals[repeat])


def ablate(pair: Pair, *, runs_dir: Path, steps: int | None = None, device: str = "cpu", jobs: int = 2,
           progress: bool = True) -> AblationResult:
    """Record every run the ablation needs (in parallel, cached) and compare each with its counterpart."""
    toggles, metrics = load_toggles(pair)
    baseline, candidate = pair.sides()
    root = Path(runs_dir) / pair.name / "ablate"
    plan = noise_runs(baseline, candidate)
    for t in toggles:
        plan[f"apply-{t.name}"] = (_with_args(baseline, t.candidate, f"baseline + {t.name}"), "")
        plan[f"revert-{t.name}"] = (_with_args(candidate, t.baseline, f"candidate - {t.name}"), "")
    traces, _ = record_plan(plan, root=root, runs_dir=Path(runs_dir), steps=steps, device=device, jobs=jobs,
                            progress=progress)
    ignore = pair.ignore_args
    finals = {k: final_loss(v) for k, v in traces.items()}
    run_metrics = {k: read_metrics(metrics, root / k) for k in plan} if metrics else {}
    results = []
    for t in toggles:
        a, r = f"apply-{t.name}", f"revert-{t.name}"
        applied = compare_traces(traces["baseline"], traces[a], baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
        reverted = compare_traces(traces["candidate"], traces[r], baseline_repeat=traces["candidate-repeat"],
                                  ignore_args=ignore)
        results.append(ToggleResult(t, applied, reverted, loss_effect(finals, "baseline", a), loss_effect(finals, r, "candidate"),
                                    {k: run_metrics[k] for k in (a, r)} if run_metrics else {}, stability(traces[a])))
    base = compare_traces(traces["baseline"], traces["candidate"], baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
    return AblationResult(pair, base, noise_floor(finals, "baseline", "baseline-repeat"), results, finals, run_metrics,
                          {k: stability(traces[k]) for k in ("baseline", "candidate")})


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr)
