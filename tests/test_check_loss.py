"""`loss` check: bit equality per step, ULP/relative evidence, NaN handling and tolerances."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from parity.capture.digest import float_bits
from parity.checks.base import Tolerance, ulp_distance
from parity.checks.loss import check_loss
from parity.exceptions import ConfigError
from parity.trace import schema
from parity.trace.reader import Trace


def _loss(x: float, dtype: torch.dtype = torch.float32) -> dict:
    return float_bits(torch.tensor(x, dtype=dtype))


def _trace(*losses: list[dict] | dict, name: str = "t") -> Trace:
    """One step per argument; a dict is that step's single loss, a list its losses."""
    steps = [{"type": schema.STEP, "step": i, "events": [], "losses": l if isinstance(l, list) else [l]}
             for i, l in enumerate(losses)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path(f"{name}.jsonl"), header=header, steps=steps, end={"type": schema.END, "status": "ok"})


def _next_f32(x: float, n: int = 1) -> float:
    v = np.float32(x)
    for _ in range(n):
        v = np.nextafter(v, np.float32(np.inf))
    return float(v)


def _nan(payload: int = 0) -> dict:
    t = torch.tensor(float("nan"), dtype=torch.float32)
    t.view(torch.int32).add_(payload)
    return float_bits(t)


VALUES = [2.5, 2.25, 2.0, 1.75, 1.5, 1.25]


def test_identical() -> None:
    base = _trace(*map(_loss, VALUES))
    f = check_loss(base, _trace(*map(_loss, VALUES)))
    assert f.status == schema.IDENTICAL and f.first_divergent_step is None
    assert f.evidence["steps_compared"] == len(VALUES)
    assert "nan_first" not in f.evidence


def test_planted_difference_reports_first_step_ulps_and_rel_at_first_and_end() -> None:
    base = _trace(*map(_loss, VALUES))
    cand_values = VALUES[:3] + [_next_f32(VALUES[3]), 1.5 * 1.001, 1.25 * 1.01]
    f = check_loss(base, _trace(*map(_loss, cand_values)))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 3
    first = f.evidence["at_first_divergence"]
    assert first["ulps"] == 1 and first["dtype"] == "float32"
    assert first["baseline"] == 1.75 and first["candidate"] == _next_f32(1.75)
    assert first["rel"] == pytest.approx((_next_f32(1.75) - 1.75) / _next_f32(1.75))
    assert first["baseline_bits"] == "3fe00000" and first["candidate_bits"] == "3fe00001"
    end = f.evidence["at_end"]
    c_end = float(np.float32(1.25 * 1.01))
    assert end["step"] == 5
    assert end["rel"] == pytest.approx((c_end - 1.25) / c_end)
    assert end["ulps"] == int(np.float32(c_end).view(np.int32)) - int(np.float32(1.25).view(np.int32))
    assert f.evidence["max_rel"] == pytest.approx(end["rel"])
    assert "step 3" in f.summary and "1 ulp" in f.summary


def _without_losses(t: Trace) -> Trace:
    for step in t.steps:
        del step["losses"]
    return t


@pytest.mark.parametrize("make", [lambda: _trace([], []), lambda: _without_losses(_trace([], []))],
                         ids=["empty-losses", "no-losses-field"])
def test_not_compared_when_no_step_has_a_loss(make) -> None:
    f = check_loss(make(), make())
    assert f.status == schema.NOT_COMPARED
    assert f.first_divergent_step is None and f.affects_training is False


def test_negative_losses_one_ulp_apart() -> None:
    f = check_loss(_trace(_loss(-1.0)), _trace(_loss(-float(np.nextafter(np.float32(1.0), np.float32(2.0))))))
    assert f.status == schema.DIFFERENT and f.evidence["at_first_divergence"]["ulps"] == 1


def test_ulps_across_zero_count_signed_zeros_as_one_point() -> None:
    tiny = float(np.nextafter(np.float32(0.0), np.float32(1.0)))
    assert ulp_distance(_loss(tiny), _loss(-tiny)) == 2
    assert ulp_distance(_loss(0.0), _loss(-0.0)) == 0


def test_signed_zero_loss_is_a_bit_difference() -> None:
    f = check_loss(_trace(_loss(0.0)), _trace(_loss(-0.0)))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0


def test_nan_on_one_side_is_flagged() -> None:
    base = _trace(_loss(1.0), _loss(0.9), _loss(0.8))
    cand = _trace(_loss(1.0), _loss(0.9), _nan())
    f = check_loss(base, cand)
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    assert f.evidence["nan_first"] == {"baseline": None, "candidate": 2}
    assert f.evidence["nan_steps"] == {"baseline": [], "candidate": [2]}
    assert f.evidence["at_first_divergence"]["ulps"] is None
    assert math.isinf(f.evidence["at_first_divergence"]["rel"])
    assert "NaN appears on one side" in f.summary


def test_nan_on_one_side_is_never_within_tolerance() -> None:
    f = check_loss(_trace(_loss(1.0)), _trace(_nan()), Tolerance(rel=0.5, ulps=10 ** 9))
    assert f.status == schema.DIFFERENT


def test_nan_on_both_sides_with_same_bits_is_identical() -> None:
    f = check_loss(_trace(_loss(1.0), _nan(3)), _trace(_loss(1.0), _nan(3)))
    assert f.status == schema.IDENTICAL
    assert f.evidence["nan_first"] == {"baseline": 1, "candidate": 1}


def test_nan_payloads_that_differ_are_different() -> None:
    f = check_loss(_trace(_nan(0)), _trace(_nan(1)))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0


def test_dtype_change_with_equal_value_is_different() -> None:
    f = check_loss(_trace(_loss(1.0, torch.float32)), _trace(_loss(1.0, torch.bfloat16)))
    assert f.status == schema.DIFFERENT
    assert f.evidence["at_first_divergence"]["ulps"] is None


def test_extra_loss_in_a_step_is_different() -> None:
    f = check_loss(_trace(_loss(1.0), _loss(2.0)), _trace(_loss(1.0), [_loss(2.0), _loss(0.5)]))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 1


def test_second_loss_of_a_step_is_compared_too() -> None:
    f = check_loss(_trace([_loss(1.0), _loss(2.0)]), _trace([_loss(1.0), _loss(3.0)]))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0


@pytest.mark.parametrize("tolerance", [Tolerance(rel=1e-6), Tolerance(ulps=2), Tolerance(rel=1e-6, ulps=2)], ids=str)
def test_tolerance_makes_small_differences_equivalent_never_identical(tolerance: Tolerance) -> None:
    base = _trace(*map(_loss, VALUES))
    cand = _trace(*(_loss(_next_f32(v, 1 if i < 3 else 2)) for i, v in enumerate(VALUES)))
    f = check_loss(base, cand, tolerance)
    assert f.status == schema.EQUIVALENT
    assert f.first_divergent_step == 0
    assert f.evidence["tolerance"] == str(tolerance)


@pytest.mark.parametrize("tolerance", [Tolerance(rel=1e-6), Tolerance(ulps=2)], ids=str)
def test_tolerance_does_not_hide_larger_differences(tolerance: Tolerance) -> None:
    base = _trace(*map(_loss, VALUES))
    cand = _trace(*map(_loss, VALUES[:4] + [_next_f32(VALUES[4], 3), VALUES[5] * 1.001]))
    f = check_loss(base, cand, tolerance)
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 4


def test_tolerance_keeps_identical_runs_identical() -> None:
    f = check_loss(_trace(*map(_loss, VALUES)), _trace(*map(_loss, VALUES)), Tolerance(rel=1e-3))
    assert f.status == schema.IDENTICAL


@pytest.mark.parametrize("kwargs", [{"rel": -1e-6}, {"ulps": -1}])
def test_negative_tolerance_is_rejected_naming_the_flag(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="--tolerance"):
        Tolerance(**kwargs)


def test_tolerance_str() -> None:
    assert str(Tolerance()) == "exact bits"
    assert str(Tolerance(rel=1e-6, ulps=4)) == "rel<=1e-06 or <=4 ulp"


def test_aligned_only_up_to_the_shorter_trace() -> None:
    f = check_loss(_trace(*map(_loss, VALUES)), _trace(*map(_loss, VALUES[:2])))
    assert f.status == schema.IDENTICAL and f.evidence["steps_compared"] == 2
