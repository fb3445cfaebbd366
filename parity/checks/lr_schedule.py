"""`lr_schedule`: learning rate per parameter group per step, plus the other per-step hyperparameters."""

from __future__ import annotations

import math

from parity.checks.base import Finding, Tolerance, aligned, float64_ulps, not_compared, rel_diff
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import StepView
from parity.trace.schema import F_GROUPS, G_LR


def check_lr_schedule(baseline: Trace, candidate: Trace, tolerance: Tolerance = Tolerance()) -> Finding:
    """IDENTICAL when every group's lr is the same float at every step (exact, as Python floats);
    EQUIVALENT when every difference is within `tolerance` (relative, or ulps of float64: the trace
    stores learning rates as JSON numbers)."""
    first = first_other = None
    max_abs = max_rel = 0.0
    max_ulps: float = 0
    compared = 0
    groups_differ = False  # a group added or removed: no tolerance covers that
    for i, a, b in aligned(baseline, candidate):
        ga, gb = a.get(F_GROUPS), b.get(F_GROUPS)
        if ga == gb:  # fast path: one C-level comparison for the common case
            compared += any(G_LR in g for g in ga or [])
            continue
        va, vb = StepView(a), StepView(b)
        la, lb = va.lrs, vb.lrs
        if not la or not lb:
            continue
        compared += 1
        if la != lb:
            first = i if first is None else first
            groups_differ = groups_differ or len(la) != len(lb)
            for x, y in zip(la, lb):
                ulps = float64_ulps(x, y)
                max_abs, max_rel = max(max_abs, abs(x - y)), max(max_rel, rel_diff(x, y))
                max_ulps = max(max_ulps, math.inf if ulps is None else ulps)
        if first_other is None and va.hyperparameters != vb.hyperparameters:
            first_other = i
    if compared == 0:
        return not_compared("lr_schedule", "no optimizer steps with param groups on both sides")
    evidence: dict = {"steps_compared": compared}
    if first_other is not None:
        evidence["hyperparameters"] = {"step": first_other,
                                       "baseline": StepView(baseline.steps[first_other]).hyperparameters,
                                       "candidate": StepView(candidate.steps[first_other]).hyperparameters}
    if first is None:
        # Other hyperparameters (betas, weight decay) are shown here but judged by config and the
        # optimizer_state/params channels, which measure whether they changed an update.
        note = f"; other hyperparameters differ from step {first_other} (see config)" if first_other is not None else ""
        return Finding("lr_schedule", schema.IDENTICAL, f"same lr in every group at all {compared} steps{note}", None, evidence)
    evidence.update({"step": first, "baseline": StepView(baseline.steps[first]).lrs,
                     "candidate": StepView(candidate.steps[first]).lrs, "max_abs": max_abs, "max_rel": max_rel,
                     "max_ulps": None if math.isinf(max_ulps) else int(max_ulps), "tolerance": str(tolerance)})
    if not groups_differ and tolerance.allows(max_rel, evidence["max_ulps"]):
        return Finding("lr_schedule", schema.EQUIVALENT,
                       f"lr differs from step {first}, max relative difference {max_rel:.3g} "
                       f"({evidence['max_ulps']} ulp of float64) within {tolerance}", first, evidence)
    return Finding("lr_schedule", schema.DIFFERENT,
                   f"lr differs from step {first}: {evidence['baseline']} vs {evidence['candidate']} "
                   f"(max abs {max_abs:.3g}, max rel {max_rel:.3g})", first, evidence)
