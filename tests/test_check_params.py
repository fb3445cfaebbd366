"""`params` check: per-step parameter digests after the update."""

from __future__ import annotations

from pathlib import Path

import torch

from parity.capture.digest import digest_tensors
from parity.checks.params import check_params
from parity.trace import schema
from parity.trace.reader import Trace


def _params(step: int, bump: float = 0.0) -> str:
    w = torch.full((3, 2), 0.5 - 0.01 * step) + bump
    return digest_tensors([w, torch.zeros(2)])


def _trace(*digests: str | None) -> Trace:
    """One step per argument: that step's parameter digest (None: not captured)."""
    steps = [{"type": schema.STEP, "step": i, "events": [], "params": d} for i, d in enumerate(digests)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header, steps=steps)


PARAMS = [_params(i) for i in range(4)]


def test_identical() -> None:
    f = check_params(_trace(*PARAMS), _trace(*PARAMS))
    assert f.status == schema.IDENTICAL and f.first_divergent_step is None
    assert f.evidence["steps_compared"] == 4


def test_planted_parameter_difference() -> None:
    cand = PARAMS[:2] + [_params(2, bump=1e-7), _params(3, bump=1e-7)]
    f = check_params(_trace(*PARAMS), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    assert f.evidence["baseline_digest"] == PARAMS[2] and f.evidence["candidate_digest"] == cand[2]
    assert "after step 2" in f.summary


def test_not_compared_at_level_minimal() -> None:
    f = check_params(_trace(None, None), _trace(None, None))
    assert f.status == schema.NOT_COMPARED and f.affects_training is False


def test_uncaptured_steps_are_skipped() -> None:
    f = check_params(_trace(*PARAMS), _trace(PARAMS[0], None, PARAMS[2], None))
    assert f.status == schema.IDENTICAL and f.evidence["steps_compared"] == 2
