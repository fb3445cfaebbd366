"""`lr_schedule`: learning rate per parameter group per step, plus the other per-step hyperparameters."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from parity.checks.base import Finding, Tolerance, aligned, float64_ulps, not_compared, rel_diff
from parity.trace import columns as col
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import StepView
from parity.trace.schema import F_GROUPS, G_INITIAL_LR, G_LR

#: (first step whose lrs differ, first whose other hyperparameters differ, steps compared, a group added
#: or removed, max abs, max rel, max ulps of float64).
_Scan = tuple[int | None, int | None, int, bool, float, float, Any]


def _scan_columns(ca: col.StepColumns, cb: col.StepColumns) -> _Scan:
    """Every step's param groups compared over the columns (both traces fit them)."""
    n = min(ca.n, cb.n)
    off_a, off_b = ca.grp_off, cb.grp_off
    rest_a, rest_b = col.joint_column(ca, cb, "rest", ca.g_rest, cb.g_rest)
    hyper_a, hyper_b = col.joint_ids([_without_initial_lr(g) for g in ca.tables["rest"]],
                                     [_without_initial_lr(g) for g in cb.tables["rest"]])

    def same_group(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        has = ca.g_haslr[ia]
        return (rest_a[ia] == rest_b[ib]) & (has == cb.g_haslr[ib]) & ((has == 0) | (ca.g_lr[ia] == cb.g_lr[ib]))

    def same_hyper(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        return hyper_a[ca.g_rest[ia]] == hyper_b[cb.g_rest[ib]]

    same = (ca.grp_state[:n] == cb.grp_state[:n]) & col.lists_equal(off_a, off_b, n, same_group)
    with_lr_a = col.count_per_step(off_a, ca.g_haslr == 1, n)
    with_lr_b = col.count_per_step(off_b, cb.g_haslr == 1, n)
    slow = ~same & (with_lr_a > 0) & (with_lr_b > 0)  # steps without an lr on a side are not compared
    compared = int(np.count_nonzero(same & (with_lr_a > 0)) + np.count_nonzero(slow))
    first_other = col.first_index(slow & ~col.lists_equal(off_a, off_b, n, same_hyper))
    # The lr lists alone: each side's lrs flattened, with offsets counting only groups that have one.
    lr_a, lr_b = ca.g_lr[ca.g_haslr == 1], cb.g_lr[cb.g_haslr == 1]
    lr_off_a = np.concatenate(([0], np.cumsum(ca.g_haslr, dtype=np.int64)))[off_a]
    lr_off_b = np.concatenate(([0], np.cumsum(cb.g_haslr, dtype=np.int64)))[off_b]
    differ = slow & ~col.lists_equal(lr_off_a, lr_off_b, n, lambda ia, ib: lr_a[ia] == lr_b[ib])
    first = col.first_index(differ)
    if first is None:
        return None, first_other, compared, False, 0.0, 0.0, 0
    groups_differ = bool((differ & (with_lr_a != with_lr_b)).any())
    _, ia, ib = col.pair_items(lr_off_a, lr_off_b, np.flatnonzero(differ))
    x, y = lr_a[ia], lr_b[ib]
    max_abs = max(0.0, float(np.abs(x - y).max())) if len(x) else 0.0
    max_rel = max(0.0, float(col.rel_diffs(x, y).max())) if len(x) else 0.0
    ulps = col.ordered_distance(x.view(np.uint64), y.view(np.uint64), np.full(len(x), 64, dtype=np.uint64))
    return first, first_other, compared, groups_differ, max_abs, max_rel, col.max_int(ulps)


def _without_initial_lr(rest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rest.items() if k != G_INITIAL_LR}


def _scan_records(baseline: Trace, candidate: Trace) -> _Scan:
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
    return first, first_other, compared, groups_differ, max_abs, max_rel, max_ulps


def check_lr_schedule(baseline: Trace, candidate: Trace, tolerance: Tolerance = Tolerance()) -> Finding:
    """IDENTICAL when every group's lr is the same float at every step (exact, as Python floats);
    EQUIVALENT when every difference is within `tolerance` (relative, or ulps of float64: the trace
    stores learning rates as JSON numbers)."""
    scanned = col.scan(baseline, candidate, (col.LR,), _scan_columns, _scan_records)
    first, first_other, compared, groups_differ, max_abs, max_rel, max_ulps = scanned
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
