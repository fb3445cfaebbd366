"""`optimizer_state` check: per-step digests of the optimizer's state."""

from __future__ import annotations

from pathlib import Path

from parity.capture.digest import combine
from parity.checks.optimizer_state import check_optimizer_state
from parity.trace import schema
from parity.trace.reader import Trace


def _state(step: int, beta2: float = 0.999) -> str:
    return combine(["exp_avg", step, "exp_avg_sq", beta2 ** (step + 1)])


def _trace(*digests: str | None) -> Trace:
    """One step per argument: that step's optimizer-state digest (None: not captured)."""
    steps = [{"type": schema.STEP, "step": i, "events": [], "optim_state": d} for i, d in enumerate(digests)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header, steps=steps)


STATES = [_state(i) for i in range(4)]


def test_identical() -> None:
    f = check_optimizer_state(_trace(*STATES), _trace(*STATES))
    assert f.status == schema.IDENTICAL and f.name == "optimizer_state"


def test_planted_state_difference() -> None:
    cand = [_state(i, beta2=0.95) for i in range(4)]
    f = check_optimizer_state(_trace(*STATES), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0
    assert f.evidence["baseline_digest"] == STATES[0] and f.evidence["candidate_digest"] == cand[0]


def test_not_compared_without_state_digests() -> None:
    f = check_optimizer_state(_trace(None), _trace(None))
    assert f.status == schema.NOT_COMPARED
