"""`loss`: every loss that backward was called on, compared bit for bit per step."""

from __future__ import annotations

import math

from parity.checks.base import Finding, Tolerance, aligned, as_float, not_compared, rel_diff, ulp_distance
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.schema import F_LOSSES, S_BITS, S_DTYPE, S_VALUE, V_NAN


def _first_loss(step: dict) -> dict | None:
    losses = step.get(F_LOSSES)
    return losses[0] if losses else None


def _difference(a: dict, b: dict) -> dict:
    """Evidence for one pair of recorded losses (kept as the trace's dicts: no object per step)."""
    va, vb = as_float(a[S_VALUE]), as_float(b[S_VALUE])
    return {"baseline": a[S_VALUE], "candidate": b[S_VALUE], "baseline_bits": a[S_BITS], "candidate_bits": b[S_BITS],
            "dtype": a[S_DTYPE], "ulps": ulp_distance(a, b), "rel": rel_diff(va, vb)}


def check_loss(baseline: Trace, candidate: Trace, tolerance: Tolerance = Tolerance()) -> Finding:
    """IDENTICAL when every recorded loss has the same bits (NaN compares by its bit pattern)."""
    first = None
    worst_rel, worst_ulps, compared = 0.0, 0.0, 0
    nan_steps = {"baseline": [], "candidate": []}
    last_pair = None
    for i, a, b in aligned(baseline, candidate):
        la, lb = a.get(F_LOSSES) or [], b.get(F_LOSSES) or []
        if la == lb and not any(l.get(S_VALUE) == V_NAN for l in la):  # fast path: identical and finite
            if la:
                compared += 1
                last_pair = (i, la[0], lb[0])
            continue
        for side, rec in (("baseline", a), ("candidate", b)):
            if any(l.get(S_VALUE) == V_NAN for l in rec.get(F_LOSSES) or []):
                nan_steps[side].append(i)
        if not la and not lb:
            continue
        compared += 1
        if [(l[S_BITS], l[S_DTYPE]) for l in la] != [(l[S_BITS], l[S_DTYPE]) for l in lb]:
            if len(la) != len(lb) or not la:
                rel, ulps = math.inf, math.inf
            else:
                diffs = [_difference(x, y) for x, y in zip(la, lb)]
                rel = max(d["rel"] for d in diffs)
                ulps = max(math.inf if d["ulps"] is None else d["ulps"] for d in diffs)
            worst_rel, worst_ulps = max(worst_rel, rel), max(worst_ulps, ulps)
            if first is None:
                first = i
        if la and lb:
            last_pair = (i, la[0], lb[0])
    if compared == 0:
        return not_compared("loss", "no step recorded a loss on both sides (was backward called?)")
    evidence: dict = {"steps_compared": compared, "max_rel": worst_rel, "tolerance": str(tolerance)}
    if nan_steps["baseline"] or nan_steps["candidate"]:
        evidence["nan_steps"] = {k: v[:10] for k, v in nan_steps.items()}
        evidence["nan_first"] = {k: (v[0] if v else None) for k, v in nan_steps.items()}
    if first is None:
        return Finding("loss", schema.IDENTICAL, f"all {compared} steps bit-identical", None, evidence)
    a, b = _first_loss(baseline.steps[first]), _first_loss(candidate.steps[first])
    if a and b:
        evidence["at_first_divergence"] = _difference(a, b)
    if last_pair:
        evidence["at_end"] = {"step": last_pair[0], **_difference(last_pair[1], last_pair[2])}
    at = evidence.get("at_first_divergence", {})
    if tolerance.allows(worst_rel, None if math.isinf(worst_ulps) else int(worst_ulps)):
        return Finding("loss", schema.EQUIVALENT, f"differs from step {first}, max relative difference {worst_rel:.3g} within {tolerance}", first, evidence)
    nan_note = " (NaN appears on one side)" if bool(nan_steps["baseline"]) != bool(nan_steps["candidate"]) else ""
    return Finding("loss", schema.DIFFERENT,
                   f"first differs at step {first}: {at.get('baseline')} vs {at.get('candidate')} "
                   f"({at.get('ulps')} ulp, rel {at.get('rel', math.inf):.3g}){nan_note}", first, evidence)
