"""`step_order`: the ordered events of each step (the loop order as data) and the step counts."""

from __future__ import annotations

import numpy as np

from parity.checks.base import Finding, aligned
from parity.trace import schema
from parity.trace.columns import EVENTS, joint_column, regular_pair
from parity.trace.reader import Trace
from parity.trace.schema import F_EVENTS


#: Events shown on each side of a loop-order difference; the evidence keeps the full sequences.
EVENTS_SHOWN = 6


def events_window(a: list[str], b: list[str]) -> tuple[str, str]:
    """The events around the first difference, at most EVENTS_SHOWN on each side."""
    start = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, start - 1)

    def shown(events: list[str]) -> str:
        part = events[lo:lo + EVENTS_SHOWN]
        return ("... > " if lo else "") + " > ".join(part) + (" > ..." if lo + EVENTS_SHOWN < len(events) else "")
    return shown(a), shown(b)


def _relevant(events: list[str]) -> list[str]:
    return [e for e in events if e not in schema.INERT_EVENTS]


def _first_differences(baseline: Trace, candidate: Trace) -> tuple[int | None, int | None]:
    """(first step whose training-relevant events differ, first step whose events differ at all)."""
    pair = regular_pair(baseline, candidate, EVENTS)
    if pair is None:
        return _first_differences_in_records(baseline, candidate)
    ca, cb = pair
    n = min(ca.n, cb.n)
    raw_a, raw_b = ca.events[:n], cb.events[:n]
    ea, eb = joint_column(ca, cb, "events", raw_a, raw_b)
    differ = np.flatnonzero(ea != eb)
    if not len(differ):
        return None, None
    # Few distinct sequences: judge each pair of them once, then spread the answer over the steps.
    pairs, inverse = np.unique(np.stack([raw_a[differ], raw_b[differ]], axis=1), axis=0, return_inverse=True)
    table_a, table_b = ca.tables["events"], cb.tables["events"]
    relevant = np.array([_relevant(table_a[x]) != _relevant(table_b[y]) for x, y in pairs.tolist()], dtype=bool)
    hits = differ[relevant[inverse.ravel()]]  # ascending, as `differ` is
    return (int(hits[0]) if len(hits) else None), int(differ[0])


def _first_differences_in_records(baseline: Trace, candidate: Trace) -> tuple[int | None, int | None]:
    first = first_inert = None
    for i, a, b in aligned(baseline, candidate):
        ea, eb = a[F_EVENTS], b[F_EVENTS]
        if ea == eb:
            continue
        if first is None and _relevant(ea) != _relevant(eb):
            first = i
        if first_inert is None:
            first_inert = i
    return first, first_inert


def check_step_order(baseline: Trace, candidate: Trace) -> Finding:
    """DIFFERENT when training-relevant events differ in order or count, or the step counts differ.

    Inert events (save, eval forwards, mode switches) differing makes it EQUIVALENT: shown, but they
    cannot change an update. Loop order alone does not decide the verdict unless step counts differ;
    the measured channels say whether a reordering changed training.
    """
    first, first_inert = _first_differences(baseline, candidate)
    na, nb = len(baseline.steps), len(candidate.steps)
    evidence: dict = {"steps": {"baseline": na, "candidate": nb},
                      "ended": {"baseline": baseline.ended_how, "candidate": candidate.ended_how}}
    at = first if first is not None else first_inert
    if at is not None:
        evidence.update({"step": at, "baseline": baseline.steps[at][F_EVENTS], "candidate": candidate.steps[at][F_EVENTS]})
    if na != nb:
        evidence["length_mismatch"] = True
        return Finding("step_order", schema.DIFFERENT,
                       f"baseline has {na} steps, candidate {nb} ({candidate.ended_how if nb < na else baseline.ended_how}); "
                       f"compared the first {min(na, nb)}", min(na, nb) if first is None else first, evidence, affects_training=True)
    if first is not None:
        a, b = events_window(evidence["baseline"], evidence["candidate"])
        return Finding("step_order", schema.DIFFERENT, f"loop order differs at step {first}: {a} vs {b}", first, evidence,
                       affects_training=False)
    if first_inert is not None:
        return Finding("step_order", schema.EQUIVALENT, f"only inert events differ (first at step {first_inert}): "
                       "saves, eval passes or mode switches, which cannot change an update", first_inert, evidence,
                       affects_training=False)
    return Finding("step_order", schema.IDENTICAL, f"same events in the same order in all {min(na, nb)} steps", None,
                   evidence, affects_training=False)
