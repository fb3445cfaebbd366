"""`lr_schedule` check: exact lr per group per step; other hyperparameters shown, not judged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from parity.checks.lr_schedule import check_lr_schedule
from parity.trace import schema
from parity.trace.reader import Trace


def _group(lr: float, **extra: object) -> dict:
    return {"lr": lr, "initial_lr": 0.1, "betas": [0.9, 0.999], "weight_decay": 0.01, **extra}


def _trace(*groups: list[dict]) -> Trace:
    """One step per argument: that step's param groups."""
    steps = [{"type": schema.STEP, "step": i, "events": [], "groups": g} for i, g in enumerate(groups)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header, steps=steps)


COSINE = [0.1, 0.0904508, 0.0654508, 0.0345492, 0.0095492]


def _schedule(lrs: list[float], **extra: object) -> Trace:
    return _trace(*([_group(lr, **extra)] for lr in lrs))


def test_identical() -> None:
    f = check_lr_schedule(_schedule(COSINE), _schedule(COSINE))
    assert f.status == schema.IDENTICAL and f.first_divergent_step is None
    assert f.evidence == {"steps_compared": len(COSINE)}


def test_planted_lr_difference() -> None:
    warmup = [0.02, 0.04] + COSINE[2:]
    f = check_lr_schedule(_schedule(COSINE), _schedule(warmup))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0
    assert f.evidence["baseline"] == [0.1] and f.evidence["candidate"] == [0.02]
    assert f.evidence["max_abs"] == pytest.approx(0.08)
    assert f.evidence["max_rel"] == pytest.approx(0.8)
    assert "step 0" in f.summary


def test_difference_late_in_the_schedule_and_in_one_group_only() -> None:
    base = _trace(*([_group(lr), _group(lr * 10)] for lr in COSINE))
    groups = [[_group(lr), _group(lr * 10)] for lr in COSINE]
    groups[3][1] = _group(0.5)
    f = check_lr_schedule(base, _trace(*groups))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 3
    assert f.evidence["candidate"] == [COSINE[3], 0.5]


def test_one_ulp_lr_difference_is_caught() -> None:
    f = check_lr_schedule(_schedule([0.1]), _schedule([math.nextafter(0.1, 1.0)]))
    assert f.status == schema.DIFFERENT


@pytest.mark.parametrize("groups", [[], [{"momentum": 0.9}]], ids=["no-groups", "groups-without-lr"])
def test_not_compared_without_lrs(groups: list) -> None:
    f = check_lr_schedule(_trace(groups, groups), _trace(groups, groups))
    assert f.status == schema.NOT_COMPARED and f.affects_training is False


def test_other_hyperparameters_are_shown_but_not_judged() -> None:
    f = check_lr_schedule(_schedule(COSINE), _schedule(COSINE, betas=[0.9, 0.95]))
    assert f.status == schema.IDENTICAL
    hp = f.evidence["hyperparameters"]
    assert hp["step"] == 0
    assert hp["baseline"][0]["betas"] == [0.9, 0.999] and hp["candidate"][0]["betas"] == [0.9, 0.95]
    assert "see config" in f.summary


def test_initial_lr_is_not_another_hyperparameter() -> None:
    f = check_lr_schedule(_schedule(COSINE), _schedule(COSINE, initial_lr=0.2))
    assert f.status == schema.IDENTICAL and "hyperparameters" not in f.evidence
