"""`lr_schedule`: learning rate per parameter group per step, plus the other per-step hyperparameters."""

from __future__ import annotations

from parity.checks.base import Finding, aligned, as_float, not_compared, rel_diff
from parity.trace import schema
from parity.trace.reader import Trace


def _lrs(step: dict) -> list[float]:
    return [as_float(g["lr"]) for g in step.get("groups", []) if "lr" in g]


def _others(step: dict) -> list[dict]:
    return [{k: v for k, v in g.items() if k not in ("lr", "initial_lr")} for g in step.get("groups", [])]


def check_lr_schedule(baseline: Trace, candidate: Trace) -> Finding:
    """IDENTICAL when every group's lr is the same float at every step (exact, as Python floats)."""
    first = first_other = None
    max_abs = max_rel = 0.0
    compared = 0
    for i, a, b in aligned(baseline, candidate):
        if a.get("groups") == b.get("groups"):  # fast path: one C-level comparison for the common case
            compared += any("lr" in g for g in a.get("groups") or [])
            continue
        la, lb = _lrs(a), _lrs(b)
        if not la or not lb:
            continue
        compared += 1
        if la != lb:
            first = i if first is None else first
            for x, y in zip(la, lb):
                max_abs, max_rel = max(max_abs, abs(x - y)), max(max_rel, rel_diff(x, y))
        if first_other is None and _others(a) != _others(b):
            first_other = i
    if compared == 0:
        return not_compared("lr_schedule", "no optimizer steps with param groups on both sides")
    evidence: dict = {"steps_compared": compared}
    if first_other is not None:
        evidence["hyperparameters"] = {"step": first_other, "baseline": _others(baseline.steps[first_other]),
                                       "candidate": _others(candidate.steps[first_other])}
    if first is None:
        # Other hyperparameters (betas, weight decay) are shown here but judged by config and the
        # optimizer_state/params channels, which measure whether they changed an update.
        note = f"; other hyperparameters differ from step {first_other} (see config)" if first_other is not None else ""
        return Finding("lr_schedule", schema.IDENTICAL, f"same lr in every group at all {compared} steps{note}", None, evidence)
    evidence.update({"step": first, "baseline": _lrs(baseline.steps[first]), "candidate": _lrs(candidate.steps[first]),
                     "max_abs": max_abs, "max_rel": max_rel})
    return Finding("lr_schedule", schema.DIFFERENT,
                   f"lr differs from step {first}: {evidence['baseline']} vs {evidence['candidate']} "
                   f"(max abs {max_abs:.3g}, max rel {max_rel:.3g})", first, evidence)
