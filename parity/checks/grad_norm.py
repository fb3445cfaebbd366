"""`grad_norm`: total gradient norm before clipping, and the clip threshold, per step."""

from __future__ import annotations

from parity.checks.base import Finding, aligned, as_float, not_compared, rel_diff, ulp_distance
from parity.trace import schema
from parity.trace.reader import Trace


def check_grad_norm(baseline: Trace, candidate: Trace) -> Finding:
    """IDENTICAL when norms have the same bits and clipping used the same threshold at every step."""
    first_norm = first_clip = None
    compared = 0
    for i, a, b in aligned(baseline, candidate):
        ca, cb = a.get("clip"), b.get("clip")
        if first_clip is None and ca != cb:
            first_clip = i
        na, nb = a.get("grad_norm"), b.get("grad_norm")
        if na is None or nb is None:
            continue
        compared += 1
        if first_norm is None and na["bits"] != nb["bits"]:
            first_norm = i
    if compared == 0 and first_clip is None:
        return not_compared("grad_norm", "no gradient norms on both sides (capture level minimal?)")
    evidence: dict = {"steps_compared": compared}
    if first_clip is not None:
        evidence["clip"] = {"step": first_clip, "baseline": baseline.steps[first_clip].get("clip"),
                            "candidate": candidate.steps[first_clip].get("clip")}
    if first_norm is not None:
        na, nb = baseline.steps[first_norm]["grad_norm"], candidate.steps[first_norm]["grad_norm"]
        evidence["norm"] = {"step": first_norm, "baseline": na["value"], "candidate": nb["value"],
                            "ulps": ulp_distance(na, nb), "rel": rel_diff(as_float(na["value"]), as_float(nb["value"]))}
    steps = [s for s in (first_norm, first_clip) if s is not None]
    if not steps:
        return Finding("grad_norm", schema.IDENTICAL, f"same gradient norm bits and clipping at all {compared} steps", None, evidence)
    first = min(steps)
    parts = []
    if first_norm is not None:
        parts.append(f"pre-clip gradient norm differs from step {first_norm}")
    if first_clip is not None:
        ca = evidence["clip"]["baseline"] or {}
        cb = evidence["clip"]["candidate"] or {}
        parts.append(f"clip threshold {ca.get('max_norm', 'none')} -> {cb.get('max_norm', 'none')} from step {first_clip}")
    return Finding("grad_norm", schema.DIFFERENT, "; ".join(parts), first, evidence)
