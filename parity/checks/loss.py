"""`loss`: every loss that backward was called on, compared bit for bit per step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from parity.checks.base import Finding, Tolerance, aligned, as_float, not_compared, rel_diff, ulp_distance
from parity.trace import columns as col
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.schema import F_LOSSES, S_BITS, S_DTYPE, S_VALUE, V_NAN

#: (first differing step, worst relative difference, worst ulps, steps compared, NaN steps per side,
#: last step with a loss on both sides).
_Scan = tuple[int | None, float, Any, int, dict[str, list[int]], int | None]


def _first_loss(step: dict) -> dict | None:
    losses = step.get(F_LOSSES)
    return losses[0] if losses else None


def _difference(a: dict, b: dict) -> dict:
    """Evidence for one pair of recorded losses (kept as the trace's dicts: no object per step)."""
    va, vb = as_float(a[S_VALUE]), as_float(b[S_VALUE])
    return {"baseline": a[S_VALUE], "candidate": b[S_VALUE], "baseline_bits": a[S_BITS], "candidate_bits": b[S_BITS],
            "dtype": a[S_DTYPE], "ulps": ulp_distance(a, b), "rel": rel_diff(va, vb)}


def _scan_columns(ca: col.StepColumns, cb: col.StepColumns) -> _Scan:
    """Every step's losses compared over the columns (both traces fit them)."""
    n = min(ca.n, cb.n)
    off_a, off_b = ca.loss_off, cb.loss_off
    count_a, count_b = col.counts(off_a, n), col.counts(off_b, n)
    dtype_a, dtype_b = col.joint_column(ca, cb, "dtypes", ca.l_dtype, cb.l_dtype)
    scale_dtype_a, scale_dtype_b = col.joint_column(ca, cb, "dtypes", ca.ls_dtype, cb.ls_dtype)

    def same_bits(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        return (ca.l_bits[ia] == cb.l_bits[ib]) & (ca.l_len[ia] == cb.l_len[ib]) & (dtype_a[ia] == dtype_b[ib])

    def same_record(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        state = ca.l_sstate[ia]
        scale = ((ca.ls_bits[ia] == cb.ls_bits[ib]) & (ca.ls_len[ia] == cb.ls_len[ib])
                 & (scale_dtype_a[ia] == scale_dtype_b[ib])
                 & col.floats_equal(ca.ls_val[ia], ca.ls_kind[ia], cb.ls_val[ib], cb.ls_kind[ib]))
        return (same_bits(ia, ib) & col.floats_equal(ca.l_val[ia], ca.l_kind[ia], cb.l_val[ib], cb.l_kind[ib])
                & (state == cb.l_sstate[ib]) & ((state != col.SCALE_PRESENT) | scale))

    nan_a = col.count_per_step(off_a, ca.l_kind == col.KIND_NAN, n) > 0
    nan_b = col.count_per_step(off_b, cb.l_kind == col.KIND_NAN, n) > 0
    fast = col.lists_equal(off_a, off_b, n, same_record) & ~nan_a  # identical and finite
    slow = ~fast & ((count_a > 0) | (count_b > 0))
    nan_steps = {"baseline": np.flatnonzero(~fast & nan_a).tolist(), "candidate": np.flatnonzero(~fast & nan_b).tolist()}
    compared = int(np.count_nonzero(fast & (count_a > 0)) + np.count_nonzero(slow))
    with_both = (fast & (count_a > 0)) | (slow & (count_a > 0) & (count_b > 0))
    last = int(np.flatnonzero(with_both)[-1]) if with_both.any() else None
    differ = slow & ~col.lists_equal(off_a, off_b, n, same_bits)
    first = col.first_index(differ)
    if first is None:
        return None, 0.0, 0.0, compared, nan_steps, last
    unpaired = differ & ((count_a != count_b) | (count_a == 0))
    steps, ia, ib = col.pair_items(off_a, off_b, np.flatnonzero(differ & ~unpaired))
    rel = col.rel_diffs(ca.l_val[ia], cb.l_val[ib])
    worst_rel = math.inf if unpaired.any() else max(0.0, float(rel.max()) if len(rel) else 0.0)
    worst_ulps = math.inf if unpaired.any() else max(0, _worst_ulps(ca, cb, ia, ib, dtype_a, dtype_b))
    return first, worst_rel, worst_ulps, compared, nan_steps, last


def _worst_ulps(ca: col.StepColumns, cb: col.StepColumns, ia: np.ndarray, ib: np.ndarray, dtype_a: np.ndarray,
                dtype_b: np.ndarray) -> Any:
    """The largest ulp_distance over paired losses: inf where one is None (dtypes differ, a NaN)."""
    if ((dtype_a[ia] != dtype_b[ib]) | (ca.l_kind[ia] == col.KIND_NAN) | (cb.l_kind[ib] == col.KIND_NAN)).any():
        return math.inf
    len_a, len_b = ca.l_len[ia], cb.l_len[ib]
    same_width = len_a == len_b
    worst = col.max_int(col.ordered_distance(ca.l_bits[ia][same_width], cb.l_bits[ib][same_width],
                                             4 * len_a[same_width].astype(np.uint64)))
    for i, j in zip(ia[~same_width].tolist(), ib[~same_width].tolist()):  # digit counts differ: rare, exact in Python
        a = {S_BITS: f"{int(ca.l_bits[i]):0{int(ca.l_len[i])}x}", S_DTYPE: "", S_VALUE: 0.0}
        b = {S_BITS: f"{int(cb.l_bits[j]):0{int(cb.l_len[j])}x}", S_DTYPE: "", S_VALUE: 0.0}
        worst = max(worst, ulp_distance(a, b))
    return worst


def _scan_records(baseline: Trace, candidate: Trace) -> _Scan:
    """The scan over step records (channels the columns cannot hold exactly)."""
    first = None
    worst_rel, worst_ulps, compared = 0.0, 0.0, 0
    nan_steps = {"baseline": [], "candidate": []}
    last = None
    for i, a, b in aligned(baseline, candidate):
        la, lb = a.get(F_LOSSES) or [], b.get(F_LOSSES) or []
        if la == lb and not any(l.get(S_VALUE) == V_NAN for l in la):  # fast path: identical and finite
            if la:
                compared += 1
                last = i
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
            last = i
    return first, worst_rel, worst_ulps, compared, nan_steps, last


def check_loss(baseline: Trace, candidate: Trace, tolerance: Tolerance = Tolerance()) -> Finding:
    """IDENTICAL when every recorded loss has the same bits (NaN compares by its bit pattern)."""
    scanned = col.scan(baseline, candidate, (col.LOSS,), _scan_columns, _scan_records)
    first, worst_rel, worst_ulps, compared, nan_steps, last = scanned
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
    if last is not None:
        end_a, end_b = _first_loss(baseline.steps[last]), _first_loss(candidate.steps[last])
        evidence["at_end"] = {"step": last, **_difference(end_a, end_b)}
    at = evidence.get("at_first_divergence", {})
    if tolerance.allows(worst_rel, None if math.isinf(worst_ulps) else int(worst_ulps)):
        return Finding("loss", schema.EQUIVALENT, f"differs from step {first}, max relative difference {worst_rel:.3g} within {tolerance}", first, evidence)
    nan_note = " (NaN appears on one side)" if bool(nan_steps["baseline"]) != bool(nan_steps["candidate"]) else ""
    return Finding("loss", schema.DIFFERENT,
                   f"first differs at step {first}: {at.get('baseline')} vs {at.get('candidate')} "
                   f"({at.get('ulps')} ulp, rel {at.get('rel', math.inf):.3g}){nan_note}", first, evidence)
