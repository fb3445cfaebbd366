"""`grad_norm`: total gradient norm before clipping, and the clip threshold, per step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from parity.checks.base import Finding, Tolerance, aligned, as_float, not_compared, rel_diff, ulp_distance
from parity.trace import columns as col
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import StepView
from parity.trace.schema import CLIP_MAX_NORM, F_CLIP, F_GRAD_NORM, S_BITS, S_VALUE


def _clip_json(step: dict) -> dict | None:
    """The clip record as evidence: the trace's own dict (max_norm, norm_type), or None."""
    return step.get(F_CLIP)


def _scan(baseline: Trace, candidate: Trace) -> tuple[int | None, int | None, int, float, Any]:
    """(first step whose norm bits differ, first whose clipping differs, steps compared, worst relative
    difference, worst ulps); over the columns where both traces fit them."""
    pair = col.regular_pair(baseline, candidate, col.GRAD_NORM)
    if pair is None:
        return _scan_records(baseline, candidate)
    ca, cb = pair
    n = min(ca.n, cb.n)
    clip_a, clip_b = col.joint_column(ca, cb, "clip", ca.clip[:n], cb.clip[:n])
    first_clip = col.first_index(clip_a != clip_b)
    both = (ca.gn_state[:n] == col.PRESENT) & (cb.gn_state[:n] == col.PRESENT)
    differ = np.flatnonzero(both & ((ca.gn_bits[:n] != cb.gn_bits[:n]) | (ca.gn_len[:n] != cb.gn_len[:n])))
    compared = int(np.count_nonzero(both))
    if not len(differ):
        return None, first_clip, compared, 0.0, 0
    map_a, map_b = col.joint_ids(ca.tables["dtypes"], cb.tables["dtypes"])
    len_a, len_b = ca.gn_len[differ], cb.gn_len[differ]
    none = ((map_a[ca.gn_dtype[differ]] != map_b[cb.gn_dtype[differ]]) | (ca.gn_kind[differ] == col.KIND_NAN)
            | (cb.gn_kind[differ] == col.KIND_NAN))
    if none.any():
        worst_ulps: Any = math.inf
    else:
        same_width = len_a == len_b
        worst_ulps = col.max_int(col.ordered_distance(ca.gn_bits[differ][same_width], cb.gn_bits[differ][same_width],
                                                      4 * len_a[same_width].astype(np.uint64)))
        for i in differ[~same_width].tolist():  # digit counts differ: rare, exact through the records
            worst_ulps = max(worst_ulps, ulp_distance(baseline.steps[i][F_GRAD_NORM], candidate.steps[i][F_GRAD_NORM]))
    worst_rel = max(0.0, float(col.rel_diffs(ca.gn_val[differ], cb.gn_val[differ]).max()))
    return int(differ[0]), first_clip, compared, worst_rel, worst_ulps


def _scan_records(baseline: Trace, candidate: Trace) -> tuple[int | None, int | None, int, float, Any]:
    first_norm = first_clip = None
    compared = 0
    worst_rel, worst_ulps = 0.0, 0
    for i, a, b in aligned(baseline, candidate):
        ca, cb = a.get(F_CLIP), b.get(F_CLIP)
        if first_clip is None and ca != cb:
            first_clip = i
        na, nb = a.get(F_GRAD_NORM), b.get(F_GRAD_NORM)
        if na is None or nb is None:
            continue
        compared += 1
        if na[S_BITS] != nb[S_BITS]:
            first_norm = i if first_norm is None else first_norm
            # Only differing steps pay for the arithmetic: identical runs stay one dict lookup a step.
            ulps = ulp_distance(na, nb)
            worst_ulps = max(worst_ulps, math.inf if ulps is None else ulps)
            worst_rel = max(worst_rel, rel_diff(as_float(na[S_VALUE]), as_float(nb[S_VALUE])))
    return first_norm, first_clip, compared, worst_rel, worst_ulps


def check_grad_norm(baseline: Trace, candidate: Trace, tolerance: Tolerance = Tolerance()) -> Finding:
    """IDENTICAL when norms have the same bits and clipping used the same threshold at every step;
    EQUIVALENT when the norms differ by at most `tolerance` (relative or in ulps of the recorded dtype) at
    every step and the clipping is the same. A different clip threshold is always DIFFERENT: it is a
    setting, not noise."""
    first_norm, first_clip, compared, worst_rel, worst_ulps = _scan(baseline, candidate)
    if compared == 0 and first_clip is None:
        return not_compared("grad_norm", "no gradient norms on both sides (capture level minimal?)")
    evidence: dict = {"steps_compared": compared}
    if first_clip is not None:
        evidence["clip"] = {"step": first_clip, "baseline": _clip_json(baseline.steps[first_clip]),
                            "candidate": _clip_json(candidate.steps[first_clip])}
    if first_norm is not None:
        na, nb = StepView(baseline.steps[first_norm]).grad_norm, StepView(candidate.steps[first_norm]).grad_norm
        evidence["norm"] = {"step": first_norm, "baseline": na.value, "candidate": nb.value,
                            "ulps": na.ulps_to(nb), "rel": rel_diff(na.as_float(), nb.as_float())}
        evidence["tolerance"] = str(tolerance)
        evidence["max_rel"] = worst_rel
        evidence["max_ulps"] = None if math.isinf(worst_ulps) else worst_ulps
    steps = [s for s in (first_norm, first_clip) if s is not None]
    if not steps:
        return Finding("grad_norm", schema.IDENTICAL, f"same gradient norm bits and clipping at all {compared} steps", None, evidence)
    first = min(steps)
    within = first_clip is None and tolerance.allows(worst_rel, None if math.isinf(worst_ulps) else int(worst_ulps))
    if within:
        return Finding("grad_norm", schema.EQUIVALENT,
                       f"pre-clip gradient norm differs from step {first_norm}, max relative difference {worst_rel:.3g} "
                       f"({evidence['max_ulps']} ulp) within {tolerance}; same clipping", first, evidence)
    parts = []
    if first_norm is not None:
        parts.append(f"pre-clip gradient norm differs from step {first_norm}" +
                     ("" if tolerance.exact else f" (max rel {worst_rel:.3g}, beyond {tolerance})"))
    if first_clip is not None:
        ca = evidence["clip"]["baseline"] or {}
        cb = evidence["clip"]["candidate"] or {}
        parts.append(f"clip threshold {ca.get(CLIP_MAX_NORM, 'none')} -> {cb.get(CLIP_MAX_NORM, 'none')} from step {first_clip}")
    return Finding("grad_norm", schema.DIFFERENT, "; ".join(parts), first, evidence)

