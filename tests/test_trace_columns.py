"""Columns: every check gives the same finding over the columns as over the step records, for any traces."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.checks.base import Tolerance
from parity.checks.compare import TOLERANT_CHECKS, compare_traces
from parity.trace import columns, schema
from parity.trace.reader import Trace

_HEX = "0123456789abcdef"


def _hexes(min_size: int = 1, max_size: int = 16) -> st.SearchStrategy[str]:
    # Mostly regular digests; now and then uppercase or longer ones, which the columns leave to the records.
    return st.one_of(st.text(_HEX, min_size=min_size, max_size=max_size),
                     st.text(_HEX, min_size=1, max_size=2).map(str.upper), st.text(_HEX, min_size=17, max_size=18))


_VALUES = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-3, 3),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.sampled_from([schema.V_NAN, schema.V_INF, schema.V_NEG_INF, 0.0, -0.0, 2 ** 60]))
_BITS = st.one_of(st.sampled_from(["3f800000", "bf800000", "7fc00000", "00000000", "80000000", "3ff0000000000000",
                                   "3c00", "0001", "7f800000"]), st.text(_HEX, min_size=8, max_size=8))
_SCALAR = st.fixed_dictionaries({"bits": _BITS,
                                 "dtype": st.sampled_from(["float32"] * 4 + ["float64", "bfloat16"]), "value": _VALUES})
_LOSS = st.one_of(_SCALAR, _SCALAR.flatmap(lambda s: st.fixed_dictionaries(
    {**{k: st.just(v) for k, v in s.items()}, "scale": st.one_of(st.none(), _SCALAR)})))
_GROUP = st.fixed_dictionaries({"momentum": st.sampled_from([0, 0.0, 0.9, True])},
                               optional={"lr": st.one_of(st.sampled_from([0.1, 1, 1.0, 0.0, -0.0]),
                                                         st.floats(0, 1, width=32)),
                                         "initial_lr": st.sampled_from([0.1, 0.2]), "betas": st.just([0.9, 0.999])})
_EVENTS = st.lists(st.sampled_from([schema.EV_ZERO_GRAD, schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_OPT_STEP,
                                    schema.EV_SAVE, schema.EV_EVAL_MODE]), max_size=4)
_FIELDS = {
    "events": _EVENTS,
    "losses": st.one_of(st.none(), st.lists(_LOSS, max_size=2)),
    "grad_norm": st.one_of(st.none(), _SCALAR.map(lambda s: {**s, "source": "parity"})),
    "clip": st.one_of(st.none(), st.fixed_dictionaries({"max_norm": st.sampled_from([1, 1.0, 0.5]), "norm_type": st.just(2.0)})),
    "groups": st.one_of(st.none(), st.lists(_GROUP, max_size=2)),
    "params": st.one_of(st.none(), _hexes()), "optim_state": st.one_of(st.none(), _hexes()),
    "loader": st.one_of(st.none(), st.lists(_hexes(), max_size=2)),
    "batch": st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["", "Net", "a:b"]), st.sampled_from(["", ":"]),
                                                     _hexes()).map("".join), max_size=2)),
    "samples": st.one_of(st.none(), _hexes(16, 16)), "epoch": st.one_of(st.none(), st.integers(0, 2)),
    "mode": st.one_of(st.none(), st.fixed_dictionaries({"root": st.just("Net"), "training": st.booleans(),
                                                        "eval_modules": st.just([]), "n_eval": st.integers(0, 2)})),
}
_STEP = st.fixed_dictionaries({k: v for k, v in _FIELDS.items() if k == "events"},
                              optional={k: v for k, v in _FIELDS.items() if k != "events"})


@st.composite
def _pair(draw: Any) -> tuple[list[dict], list[dict]]:
    """A baseline and a candidate that shares most of it: differences at a few steps, in a few fields."""
    base = draw(st.lists(_STEP, min_size=0, max_size=6))
    cand = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 4))):
        if cand:
            i = draw(st.integers(0, len(cand) - 1))
            field = draw(st.sampled_from(sorted(_FIELDS)))
            cand[i][field] = draw(_FIELDS[field])
    if draw(st.booleans()):
        cand = cand[:draw(st.integers(0, len(cand)))] + draw(st.lists(_STEP, max_size=2))
    return base, cand


def _trace(steps: list[dict], name: str) -> Trace:
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    steps = [{"type": schema.STEP, "step": i, **s} for i, s in enumerate(steps)]
    return Trace(path=Path(f"{name}/trace-rank0.jsonl"), header=header, steps=steps,
                 end={"type": schema.END, "status": schema.END_OK})


def _records_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns.StepColumns, "regular", lambda self, *channels: False)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (evidence may hold a NaN relative difference of two NaN losses)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_TOLERANCES = st.sampled_from([None, Tolerance(ulps=2), Tolerance(rel=1e-3), Tolerance(ulps=2 ** 40)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=_pair(), tolerance=_TOLERANCES)
def test_every_check_says_the_same_over_columns_and_over_records(pair, tolerance, monkeypatch: pytest.MonkeyPatch) -> None:
    base, cand = _trace(pair[0], "base"), _trace(pair[1], "cand")
    limits = {name: tolerance for name in TOLERANT_CHECKS} if tolerance else None
    fast = compare_traces(base, cand, tolerances=limits).to_json()
    with monkeypatch.context() as m:
        _records_only(m)
        slow = compare_traces(base, cand, tolerances=limits).to_json()
    assert _same(fast, slow), (fast, slow)


def test_regular_traces_are_read_through_the_columns() -> None:
    steps = [{"type": schema.STEP, "step": i, "events": ["forward"], "losses": [{"bits": "3f800000", "dtype": "float32",
              "value": 1.0}], "params": f"{i:016x}", "batch": [f"Net:{i:016x}"]} for i in range(3)]
    cols = columns.build_columns(steps)
    assert cols.irregular == frozenset()
    assert cols.params_bits.tolist() == [0, 1, 2] and cols.bt_root.tolist() == [0, 0, 0]


@pytest.mark.parametrize("field, value, channel", [
    ("params", "ABCDEF", columns.PARAMS), ("params", "0" * 17, columns.PARAMS),
    ("losses", [{"bits": "3f800000", "dtype": "float32", "value": 1.0, "extra": 1}], columns.LOSS),
    ("losses", [{"bits": "3f800000", "dtype": "float32", "value": 2 ** 60}], columns.LOSS),
    ("groups", [{"lr": "0.1"}], columns.LR), ("groups", [{"lr": True}], columns.LR),
    ("batch", ["Net:xyz"], columns.BATCH), ("epoch", True, columns.EPOCH),
])
def test_a_field_the_columns_cannot_hold_exactly_leaves_its_channel_to_the_records(field, value, channel) -> None:
    cols = columns.build_columns([{"type": schema.STEP, "step": 0, "events": [], field: value}])
    assert cols.irregular == {channel}
