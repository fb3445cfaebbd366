"""`parity ablate`: which of several differences between two sides changes training, one at a time.

For every named toggle of a pair file it records (a) the baseline with that one change applied and
(b) the candidate with that one change reverted, and compares each with its counterpart. Runs are
independent: they execute in parallel up to `jobs`, and the record cache (keyed by command,
environment, seed and code revision) means a second ablation reruns nothing it already has.
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from parity.checks.base import as_float, rel_diff
from parity.checks.compare import Comparison, compare_traces
from parity.exceptions import ConfigError
from parity.pairs import Pair, Side, tomllib
from parity.sides import record_side
from parity.trace.reader import Trace, load_run


@dataclass(frozen=True)
class Toggle:
    """One named difference: the arguments that spell it on each side."""

    name: str
    baseline: list[str]
    candidate: list[str]


@dataclass
class Metrics:
    """Optional per-run metrics file written by the trainer (JSON lines); the last value of each key counts."""

    file: str
    keys: list[str]

    def read(self, run_dir: Path) -> dict[str, float | None]:
        path = Path(self.file.format(out=run_dir.resolve()))
        values: dict[str, float | None] = {k: None for k in self.keys}
        if not path.is_file():
            return values
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            for k in self.keys:
                if isinstance(record, dict) and isinstance(record.get(k), (int, float)):
                    values[k] = float(record[k])
        return values


def load_toggles(pair: Pair) -> tuple[list[Toggle], Metrics | None]:
    data = tomllib.loads(pair.path.read_text())
    toggles = []
    for i, t in enumerate(data.get("toggle", [])):
        if not {"name", "baseline", "candidate"} <= set(t):
            raise ConfigError(f"{pair.path}: [[toggle]] #{i + 1} needs name, baseline and candidate (argument lists)")
        toggles.append(Toggle(t["name"], [str(a) for a in t["baseline"]], [str(a) for a in t["candidate"]]))
    if not toggles:
        raise ConfigError(f"{pair.path}: no [[toggle]] tables; list each difference with the arguments that spell it")
    m = data.get("metrics")
    return toggles, (Metrics(m["file"], list(m.get("keys", []))) if m else None)


def stability(trace: Trace) -> dict[str, Any]:
    """Largest pre-clip gradient norm and the first step with a non-finite loss: the instability signals."""
    norms = [as_float(s["grad_norm"]["value"]) for s in trace.steps if s.get("grad_norm")]
    finite = [n for n in norms if n == n and n != float("inf")]
    bad = next((s["step"] for s in trace.steps for l in s.get("losses", []) if l["value"] in ("nan", "inf", "-inf")), None)
    return {"max_grad_norm": max(finite) if finite else None, "first_nonfinite_loss_step": bad}


def final_loss(trace: Trace, tail: float = 0.1) -> float | None:
    """Mean loss over the last 10% of steps: less sensitive to one noisy batch than the last value."""
    losses = [as_float(s["losses"][0]["value"]) for s in trace.steps if s.get("losses")]
    if not losses:
        return None
    n = max(1, int(len(losses) * tail))
    return sum(losses[-n:]) / n


@dataclass
class ToggleResult:
    toggle: Toggle
    applied: Comparison
    reverted: Comparison
    applied_effect: float | None
    reverted_effect: float | None
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    stability: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def side(c: Comparison, effect: float | None) -> dict[str, Any]:
            fd = c.first_divergence or {}
            return {"status": c.verdict, "first_divergent_step": fd.get("step"), "channel": fd.get("channel"),
                    "final_loss_rel_change": effect}
        return {"name": self.toggle.name, "baseline_args": self.toggle.baseline, "candidate_args": self.toggle.candidate,
                "applied_to_baseline": side(self.applied, self.applied_effect),
                "reverted_on_candidate": side(self.reverted, self.reverted_effect), "metrics": self.metrics,
                "stability_applied": self.stability}


@dataclass
class AblationResult:
    pair: Pair
    baseline: Comparison
    noise_floor: float | None
    toggles: list[ToggleResult]
    finals: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]]
    stability: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair.name, "baseline_vs_candidate": self.baseline.verdict,
                "first_divergence": self.baseline.first_divergence, "noise_floor_final_loss_rel": self.noise_floor,
                "final_loss": self.finals, "metrics": self.metrics, "stability": self.stability,
                "toggles": [t.to_json() for t in self.toggles]}


def _with_args(side: Side, extra: list[str], label: str) -> Side:
    return replace(side, name=label, command=[*side.command, *extra])


def ablate(pair: Pair, *, runs_dir: Path, steps: int | None = None, device: str = "cpu", jobs: int = 2,
           progress: bool = True) -> AblationResult:
    """Record every run the ablation needs (in parallel, cached) and compare each with its counterpart."""
    toggles, metrics = load_toggles(pair)
    root = Path(runs_dir) / pair.name / "ablate"
    cache = Path(runs_dir) / ".cache"
    plan: dict[str, tuple[Side, str]] = {"baseline": (pair.baseline, ""), "candidate": (pair.candidate, ""),
                                         "baseline-repeat": (pair.baseline, "repeat")}
    for t in toggles:
        plan[f"apply-{t.name}"] = (_with_args(pair.baseline, t.candidate, f"baseline + {t.name}"), "")
        plan[f"revert-{t.name}"] = (_with_args(pair.candidate, t.baseline, f"candidate - {t.name}"), "")

    def run(label: str) -> tuple[str, Trace]:
        side, salt = plan[label]
        budget = steps or side.steps.get(device, 20)
        record_side(side, root / label, steps=budget, device=device, cache_dir=cache, salt=salt, label=label)
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
    run_metrics = {k: metrics.read(root / k) for k in plan} if metrics else {}
    results = []
    for t in toggles:
        a, r = f"apply-{t.name}", f"revert-{t.name}"
        applied = compare_traces(traces["baseline"], traces[a], baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
        reverted = compare_traces(traces["candidate"], traces[r], ignore_args=ignore)
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
