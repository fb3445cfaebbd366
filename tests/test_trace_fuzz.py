"""Property test: any damage to a real trace reads back valid and compares, or fails as one ParityError line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity
from parity.checks.compare import compare_traces
from parity.exceptions import ParityError
from parity.report.render import to_json_text
from parity.trace.reader import Trace, load_run, load_trace


def _train_tiny(steps: int = 3) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,))),
                                       batch_size=4)
    for inputs, targets in list(data)[:steps]:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """One real trace, recorded in-process once for the module: every field a trainer can produce."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    with parity.record(run, seed=0):
        _train_tiny()
    return next(run.glob("trace-rank*.jsonl"))


#: Stand-ins for JSON text no encoder writes, put in after encoding: a bare NaN and a float that overflows.
_RAW_NAN, _RAW_HUGE = "@@raw-nan@@", "@@raw-huge@@"
_RAW_TEXT = {f'"{_RAW_NAN}"'.encode(): b"NaN", f'"{_RAW_HUGE}"'.encode(): b"-1e400"}

#: Values that are the wrong type, out of range, or a non-finite spelling in almost any field.
_HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([2**64, -1, -2**63]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["nan", "inf", "-inf", "", "zz", "1e400"]),
    st.sampled_from([_RAW_NAN, _RAW_HUGE]),
    st.text(max_size=4), st.just([]), st.just({}), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(value, prefix=()):
    """Every location inside a decoded JSON value, the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


@st.composite
def _damage(draw, data: bytes) -> bytes:
    """One to three damages: truncation, byte flips, duplicated/reordered lines, hostile field values."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "duplicate", "swap", "field", "field", "field"]))
        lines = data.split(b"\n")
        if kind == "truncate" and data:
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif kind == "duplicate" and lines:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines)))
            data = b"\n".join([*lines[:j], lines[i], *lines[j:]])
        elif kind == "swap" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif kind == "field":
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            try:
                record = json.loads(lines[i])
            except (ValueError, IndexError):
                continue
            path = draw(st.sampled_from(list(_paths(record))))
            lines[i] = json.dumps(_replace(record, path, draw(_HOSTILE))).encode()
            for stand_in, raw in _RAW_TEXT.items():
                lines[i] = lines[i].replace(stand_in, raw)
            data = b"\n".join(lines)
    return data


def _exercise(original: Trace, damaged_path: Path) -> None:
    """Read, then compare both ways and serialise: a ParityError is the only acceptable failure."""
    try:
        damaged = load_run(damaged_path).primary
        load_trace(damaged_path)
        for base, cand in ((original, damaged), (damaged, original)):
            to_json_text(compare_traces(base, cand).to_json())
    except ParityError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"not a one-line message: {message!r}"


def test_the_undamaged_trace_reads_and_compares_identical(recorded: Path) -> None:
    trace = load_trace(recorded)
    assert len(trace.steps) == 3 and trace.complete
    assert compare_traces(trace, load_trace(recorded)).verdict == "IDENTICAL"


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_traces_read_and_compare_or_fail_as_one_parity_error_line(recorded: Path, data) -> None:
    original = load_trace(recorded)
    damaged = data.draw(_damage(recorded.read_bytes()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace-rank0.jsonl"
        path.write_bytes(damaged)
        _exercise(original, path)


def test_a_nan_string_in_a_number_field_is_rejected_naming_the_line(recorded: Path, tmp_path: Path) -> None:
    lines = recorded.read_text().splitlines()
    step_line = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "step")
    record = json.loads(lines[step_line])
    record["step"] = "nan"
    lines[step_line] = json.dumps(record)
    path = tmp_path / "trace-rank0.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParityError, match=rf"trace-rank0.jsonl:{step_line + 1}: "):
        load_trace(path)
