"""`grad_norm` check: pre-clip gradient norm bits and the clip threshold per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from parity.capture.digest import float_bits
from parity.checks.grad_norm import check_grad_norm
from parity.trace import schema
from parity.trace.reader import Trace


def _norm(x: float) -> dict:
    return {**float_bits(torch.tensor(x, dtype=torch.float32)), "source": "clip_grad_norm_"}


def _clip(max_norm: float) -> dict:
    return {"max_norm": max_norm, "norm_type": 2.0}


def _trace(*steps: tuple[float | None, float | None]) -> Trace:
    """One step per (grad_norm, clip max_norm) pair; None: not recorded."""
    records = [{"type": schema.STEP, "step": i, "events": [],
                "grad_norm": None if n is None else _norm(n), "clip": None if c is None else _clip(c)}
               for i, (n, c) in enumerate(steps)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header, steps=records)


NORMS = [3.0, 2.5, 2.0, 1.5]


def _clipped(norms: list[float], max_norm: float | None = 1.0) -> Trace:
    return _trace(*((n, max_norm) for n in norms))


def test_identical() -> None:
    f = check_grad_norm(_clipped(NORMS), _clipped(NORMS))
    assert f.status == schema.IDENTICAL and f.first_divergent_step is None
    assert f.evidence == {"steps_compared": 4}


def test_planted_norm_difference() -> None:
    f = check_grad_norm(_clipped(NORMS), _clipped(NORMS[:2] + [2.0000002, 1.6]))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    norm = f.evidence["norm"]
    assert norm["step"] == 2 and norm["baseline"] == 2.0 and norm["ulps"] == 1
    assert norm["rel"] == pytest.approx((norm["candidate"] - 2.0) / norm["candidate"])
    assert "clip" not in f.evidence
    assert "norm differs from step 2" in f.summary


def test_planted_clip_threshold_difference() -> None:
    cand = _trace((NORMS[0], 1.0), (NORMS[1], 0.5), (NORMS[2], 0.5), (NORMS[3], 0.5))
    f = check_grad_norm(_clipped(NORMS), cand)
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 1
    assert f.evidence["clip"] == {"step": 1, "baseline": _clip(1.0), "candidate": _clip(0.5)}
    assert "clip threshold 1.0 -> 0.5 from step 1" in f.summary


def test_clipping_added_on_one_side() -> None:
    f = check_grad_norm(_clipped(NORMS, None), _clipped(NORMS, 1.0))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0
    assert "clip threshold none -> 1.0" in f.summary


def test_earlier_of_norm_and_clip_difference_wins() -> None:
    cand = _trace((NORMS[0], 1.0), (9.0, 1.0), (NORMS[2], 2.0), (NORMS[3], 2.0))
    f = check_grad_norm(_clipped(NORMS), cand)
    assert f.first_divergent_step == 1
    assert f.evidence["norm"]["step"] == 1 and f.evidence["clip"]["step"] == 2


def test_not_compared_without_norms_or_clipping() -> None:
    f = check_grad_norm(_clipped([None, None], None), _clipped([None, None], None))
    assert f.status == schema.NOT_COMPARED and f.affects_training is False
