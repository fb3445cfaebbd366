"""Reading and writing traces: round trips, killed processes, and every class of bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from parity.exceptions import TraceError
from parity.trace import schema
from parity.trace.reader import load_run, load_trace
from parity.trace.writer import TraceWriter, encode_record


def _header(rank: int = 0, **extra: object) -> dict:
    return {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION,
            "rank": rank, "seed": 0, **extra}


def _step(i: int, **fields: object) -> dict:
    return {"type": schema.STEP, "step": i, "events": [schema.EV_ZERO_GRAD, schema.EV_FORWARD,
                                                       schema.EV_BACKWARD, schema.EV_OPT_STEP],
            "losses": [{"bits": "3f800000", "dtype": "float32", "value": 1.0}],
            "clip": {"max_norm": 1.0, "norm_type": 2.0}, **fields}


def _end(steps: int, status: str = schema.END_OK) -> dict:
    return {"type": schema.END, "status": status, "steps": steps}


def _write(directory: Path, records: list[dict], rank: int = 0) -> Path:
    writer = TraceWriter(directory, rank)
    for record in records:
        writer.write(record)
    writer.close()
    return writer.path


def _lines(path: Path, *lines: str, newline_at_end: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")
    return path


# -- round trips ------------------------------------------------------------------------------

def test_round_trip_through_writer_and_load_trace(tmp_path: Path) -> None:
    steps = [_step(i) for i in range(3)]
    path = _write(tmp_path, [_header(), {"type": schema.META, "key": "argparse", "value": {"lr": 0.1}},
                             *steps, _end(3)])
    trace = load_trace(path)
    assert path.name == "trace-rank0.jsonl"
    assert trace.header == _header()
    assert trace.meta == {"argparse": {"lr": 0.1}}
    assert trace.steps == steps
    assert trace.complete and trace.ended_how == "complete"
    assert trace.rank == 0


def test_round_trip_through_load_run_keys_traces_by_rank(tmp_path: Path) -> None:
    for rank in (0, 1):
        _write(tmp_path, [_header(rank), _step(0), _end(1)], rank=rank)
    run = load_run(tmp_path)
    assert sorted(run.traces) == [0, 1]
    assert run.primary.rank == 0
    assert run.traces[1].header["rank"] == 1


def test_load_run_accepts_a_single_trace_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [_header(), _step(0), _end(1)])
    run = load_run(path)
    assert list(run.traces) == [0] and run.primary.steps == [_step(0)]


def test_writer_output_is_sorted_compact_json(tmp_path: Path) -> None:
    path = _write(tmp_path, [_header(), _step(0)])
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == json.dumps(_header(), sort_keys=True, separators=(",", ":"))


def test_encode_record_refuses_bare_nan() -> None:
    with pytest.raises(ValueError):
        encode_record({"type": schema.STEP, "value": float("nan")})


# -- killed processes -------------------------------------------------------------------------

def test_trace_without_end_record_reads_back_incomplete(tmp_path: Path) -> None:
    path = _write(tmp_path, [_header(), _step(0), _step(1)])
    trace = load_trace(path)
    assert [s["step"] for s in trace.steps] == [0, 1]
    assert trace.end is None
    assert trace.complete is False
    assert "incomplete" in trace.ended_how


def test_trace_ended_by_exception_is_not_complete(tmp_path: Path) -> None:
    path = _write(tmp_path, [_header(), _step(0), {**_end(1, schema.END_EXCEPTION), "error": "RuntimeError: boom"}])
    trace = load_trace(path)
    assert trace.complete is False
    assert "RuntimeError: boom" in trace.ended_how


@pytest.mark.parametrize("cut", [1, 10, -1], ids=["after-brace", "mid-key", "before-last-brace"])
def test_half_written_last_line_is_dropped(tmp_path: Path, cut: int) -> None:
    path = _write(tmp_path, [_header(), _step(0), _step(1)])
    partial = encode_record(_step(2))[:cut]
    with open(path, "a", encoding="utf-8") as fh:  # what a kill mid-write leaves: no newline at the end
        fh.write(partial)
    trace = load_trace(path)
    assert [s["step"] for s in trace.steps] == [0, 1]
    assert trace.complete is False


def test_half_written_last_line_ending_in_a_nested_brace_is_dropped(tmp_path: Path) -> None:
    path = _write(tmp_path, [_header(), _step(0)])
    line = encode_record(_step(1))
    partial = line[:line.index("}") + 1]  # '{"clip":{"max_norm":1.0,"norm_type":2.0}'
    assert partial.endswith("}") and not partial.endswith("}}")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(partial)
    assert [s["step"] for s in load_trace(path).steps] == [0]


def test_complete_but_invalid_last_line_is_rejected(tmp_path: Path) -> None:
    path = _lines(tmp_path / "trace-rank0.jsonl", encode_record(_header()), encode_record(_step(0)), "garbage")
    with pytest.raises(TraceError, match=r"trace-rank0\.jsonl:3: not valid JSON"):
        load_trace(path)


# -- rejections -------------------------------------------------------------------------------

def _empty(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", newline_at_end=False)


def _not_json_line2(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", encode_record(_header()), "{not json", encode_record(_step(0)))


def _foreign_json(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", json.dumps({"type": "header", "schema": "other.tool", "version": 1}))


def _foreign_json_no_type(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", json.dumps({"name": "package.json"}), "{}")


def _wrong_version(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", encode_record(_header(version=schema.SCHEMA_VERSION + 1)))


def _out_of_order(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", encode_record(_header()), encode_record(_step(0)), encode_record(_step(2)))


def _unknown_record(d: Path) -> Path:
    return _lines(d / "trace-rank0.jsonl", encode_record(_header()), json.dumps({"type": "bogus"}))


def _missing_run_dir(d: Path) -> Path:
    return d / "no-such-run"


def _run_dir_without_traces(d: Path) -> Path:
    (d / "run").mkdir()
    (d / "run" / "stdout.log").write_text("hello\n")
    return d / "run"


@pytest.mark.parametrize(("make", "loader", "message"), [
    (_empty, load_trace, r"trace-rank0\.jsonl:1: empty file"),
    (_not_json_line2, load_trace, r"trace-rank0\.jsonl:2: not valid JSON"),
    (_foreign_json, load_trace, r"trace-rank0\.jsonl:1: not a parity trace"),
    (_foreign_json_no_type, load_trace, r"trace-rank0\.jsonl:1: not a parity trace"),
    (_wrong_version, load_trace, rf"trace-rank0\.jsonl:1: wrong schema: version {schema.SCHEMA_VERSION + 1} "
                                 rf"instead of {schema.SCHEMA_VERSION}"),
    (_out_of_order, load_trace, r"trace-rank0\.jsonl:3: step 2 out of order \(expected 1\)"),
    (_unknown_record, load_trace, r"trace-rank0\.jsonl:2: unknown record type"),
    (_missing_run_dir, load_run, r"no-such-run: no such run directory"),
    (_run_dir_without_traces, load_run, r"run: no trace files"),
], ids=["empty", "not-json-line-2", "foreign-json", "foreign-json-no-type", "wrong-schema", "steps-out-of-order",
        "unknown-record", "missing-run-dir", "no-traces"])
def test_loader_rejects_bad_input(tmp_path: Path, make, loader, message: str) -> None:
    target = make(tmp_path)
    with pytest.raises(TraceError, match=message) as info:
        loader(target)
    assert str(info.value).startswith(str(target)), "the message must start with the location"


def test_not_json_on_line_2_names_path_and_line(tmp_path: Path) -> None:
    path = _not_json_line2(tmp_path)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert f"{path}:2:" in str(info.value)


def test_load_run_rejects_a_bad_trace_instead_of_skipping_it(tmp_path: Path) -> None:
    _write(tmp_path, [_header(0), _step(0), _end(1)], rank=0)
    rank1 = _lines(tmp_path / "trace-rank1.jsonl", encode_record(_header(1, version=99)))
    with pytest.raises(TraceError, match="wrong schema"):
        load_run(tmp_path)
    assert rank1.exists()


def test_missing_trace_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(tmp_path / "trace-rank0.jsonl")


# -- create-only writer -----------------------------------------------------------------------

def test_writer_never_truncates_an_existing_trace(tmp_path: Path) -> None:
    first = _write(tmp_path, [_header(), _step(0), _end(1)])
    before = first.read_bytes()
    second = TraceWriter(tmp_path, 0)
    try:
        second.write(_header(pid=os.getpid()))
    finally:
        second.close()
    assert first.read_bytes() == before
    assert second.path != first
    assert second.path.name == f"trace-rank0.pid{os.getpid()}.jsonl"
    assert second.path.name.startswith("trace-rank0") and second.path.suffix == ".jsonl"
    assert load_trace(second.path).header["pid"] == os.getpid()


def test_writer_flushes_every_record(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, 0)
    try:
        writer.write(_header())
        writer.write(_step(0))
        # Still open, as in a process about to be killed: what is on disk must already read back.
        assert [s["step"] for s in load_trace(writer.path).steps] == [0]
    finally:
        writer.close()
