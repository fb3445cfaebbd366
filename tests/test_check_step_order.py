"""`step_order` check: the loop order as data, inert events, and step counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.checks.step_order import check_step_order
from parity.trace import schema
from parity.trace.reader import Trace

LOOP = [schema.EV_ZERO_GRAD, schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_OPT_STEP, schema.EV_SCHED_STEP]


def _trace(*events: list[str], complete: bool = True) -> Trace:
    """One step per argument: that step's events."""
    steps = [{"type": schema.STEP, "step": i, "events": list(e)} for i, e in enumerate(events)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    end = {"type": schema.END, "status": schema.END_OK, "steps": len(steps)} if complete else None
    return Trace(path=Path("t.jsonl"), header=header, steps=steps, end=end)


def _loop(n: int) -> list[list[str]]:
    return [list(LOOP) for _ in range(n)]


def test_identical() -> None:
    f = check_step_order(_trace(*_loop(4)), _trace(*_loop(4)))
    assert f.status == schema.IDENTICAL and f.first_divergent_step is None
    assert f.evidence["steps"] == {"baseline": 4, "candidate": 4}
    assert f.affects_training is False


def test_reordered_events_are_different_with_both_sequences() -> None:
    sched_first = [schema.EV_ZERO_GRAD, schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_SCHED_STEP, schema.EV_OPT_STEP]
    cand = _loop(2) + [sched_first] + _loop(1)
    f = check_step_order(_trace(*_loop(4)), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    assert f.evidence["baseline"] == LOOP and f.evidence["candidate"] == sched_first
    assert f.evidence["step"] == 2 and "length_mismatch" not in f.evidence
    assert f.affects_training is False, "a reordering alone must not decide the verdict"
    assert "optimizer.step > scheduler.step" in f.summary and "scheduler.step > optimizer.step" in f.summary


def test_missing_event_is_different() -> None:
    no_zero_grad = [e for e in LOOP if e != schema.EV_ZERO_GRAD]
    f = check_step_order(_trace(*_loop(3)), _trace(LOOP, no_zero_grad, no_zero_grad))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 1


@pytest.mark.parametrize("inert", sorted(schema.INERT_EVENTS))
def test_only_inert_events_differing_is_equivalent(inert: str) -> None:
    cand = _loop(3)
    cand[1] = cand[1] + [inert]
    f = check_step_order(_trace(*_loop(3)), _trace(*cand))
    assert f.status == schema.EQUIVALENT and f.first_divergent_step == 1
    assert f.evidence["candidate"] == LOOP + [inert]
    assert f.affects_training is False


def test_eval_pass_between_steps_is_equivalent() -> None:
    eval_pass = [schema.EV_EVAL_MODE, schema.EV_FORWARD_NO_GRAD, schema.EV_FORWARD_NO_GRAD, schema.EV_TRAIN_MODE,
                 schema.EV_SAVE]
    cand = _loop(3)
    cand[2] = eval_pass + cand[2]
    assert check_step_order(_trace(*_loop(3)), _trace(*cand)).status == schema.EQUIVALENT


def test_reorder_wins_over_an_earlier_inert_difference() -> None:
    cand = _loop(3)
    cand[0] = cand[0] + [schema.EV_SAVE]
    cand[2] = list(reversed(LOOP))
    f = check_step_order(_trace(*_loop(3)), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2


@pytest.mark.parametrize(("nb", "nc"), [(5, 3), (3, 5)])
def test_different_lengths_are_different_with_length_mismatch(nb: int, nc: int) -> None:
    f = check_step_order(_trace(*_loop(nb)), _trace(*_loop(nc), complete=nc > nb))
    assert f.status == schema.DIFFERENT
    assert f.evidence["length_mismatch"] is True
    assert f.evidence["steps"] == {"baseline": nb, "candidate": nc}
    assert f.first_divergent_step == 3
    assert f.affects_training is True
    if nc < nb:
        assert "incomplete" in f.summary and "incomplete" in f.evidence["ended"]["candidate"]


def test_length_mismatch_after_a_reorder_points_at_the_reorder() -> None:
    cand = _loop(2)
    cand[1] = list(reversed(LOOP))
    f = check_step_order(_trace(*_loop(4)), _trace(*cand))
    assert f.evidence["length_mismatch"] is True and f.first_divergent_step == 1


def test_a_long_loop_order_difference_is_summarised_around_the_first_difference() -> None:
    from parity.checks.step_order import EVENTS_SHOWN, events_window

    a = [f"e{i}" for i in range(60)]
    b = a[:30] + ["other"] + a[31:]
    shown_a, shown_b = events_window(a, b)
    assert shown_a.startswith("... > e29 > e30") and shown_b.startswith("... > e29 > other")
    assert shown_a.count(" > ") <= EVENTS_SHOWN + 1 and shown_a.endswith("> ...")
