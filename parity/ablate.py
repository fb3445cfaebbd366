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
from typing import Any

from parity.checks.base import rel_diff
from parity.checks.compare import compare_traces
from parity.exceptions import ConfigError
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


def ablate(pair: Pair, *, runs_dir: Path, steps: int | None = None, device: str = "cpu", jobs: int = 2,
           progress: bool = True) -> AblationResult:
    """Record every run the ablation needs (in parallel, cached) and compare each with its counterpart."""
    toggles, metrics = load_toggles(pair)
    baseline, candidate = pair.sides()
    root = Path(runs_dir) / pair.name / "ablate"
    cache = Path(runs_dir) / ".cache"
    # Each side recorded twice: the applied changes are judged against the baseline's own run-to-run noise,
    # the reverted ones against the candidate's (another setup, e.g. workers or checkpointing, may have
    # other noise); never blame a change for noise its counterpart shows by itself.
    plan: dict[str, tuple[Side, str]] = {"baseline": (baseline, ""), "candidate": (candidate, ""),
                                         "baseline-repeat": (baseline, "repeat"),
                                         "candidate-repeat": (candidate, "repeat")}
    for t in toggles:
        plan[f"apply-{t.name}"] = (_with_args(baseline, t.candidate, f"baseline + {t.name}"), "")
        plan[f"revert-{t.name}"] = (_with_args(candidate, t.baseline, f"candidate - {t.name}"), "")

    def run(label: str) -> tuple[str, Trace]:
        side, salt = plan[label]
        record_side(side, root / label, steps=side.budget(device, steps), device=device, cache_dir=cache, salt=salt, label=label)
        return label, load_run(root / label).primary

    traces: dict[str, Trace] = {}
    bar = _progress(len(plan), progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for label, trace in (f.result() for f in concurrent.futures.as_completed([pool.submit(run, k) for k in plan])):
            traces[label] = trace
            bar.update(1)
    bar.close()
    ignore = pair.ignore_args
    finals = {k: final_loss(v) for k, v in traces.items()}
    noise = None
    if finals["baseline"] is not None and finals["baseline-repeat"] is not None:
        noise = rel_diff(finals["baseline"], finals["baseline-repeat"])
    run_metrics = {k: read_metrics(metrics, root / k) for k in plan} if metrics else {}
    results = []
    for t in toggles:
        a, r = f"apply-{t.name}", f"revert-{t.name}"
        applied = compare_traces(traces["baseline"], traces[a], baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
        reverted = compare_traces(traces["candidate"], traces[r], baseline_repeat=traces["candidate-repeat"],
                                  ignore_args=ignore)
        effect = lambda x, y: None if finals[x] is None or finals[y] is None else (finals[y] - finals[x]) / abs(finals[x] or 1)
        results.append(ToggleResult(t, applied, reverted, effect("baseline", a), effect(r, "candidate"),
                                    {k: run_metrics[k] for k in (a, r)} if run_metrics else {}, stability(traces[a])))
    base = compare_traces(traces["baseline"], traces["candidate"], baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
    return AblationResult(pair, base, noise, results, finals, run_metrics,
                          {k: stability(traces[k]) for k in ("baseline", "candidate")})


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="parity ablate", unit="run", file=sys.stderr)
