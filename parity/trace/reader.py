"""Read and validate trace files and run directories; every problem names the file and line."""

from __future__ import annotations

import gc
import json

try:  # 3-4x faster decoding of large traces; the stdlib decoder gives identical records
    from orjson import JSONDecodeError as _FastDecodeError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised by test_reader_without_orjson
    _loads, _FastDecodeError = json.loads, json.JSONDecodeError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.exceptions import TraceError
from parity.trace import schema


@dataclass
class Trace:
    """One process's recorded run: header metadata, late metadata, steps, and how it ended."""

    path: Path
    header: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """True only when the process reached a clean exit and wrote its end record."""
        return self.end is not None and self.end.get("status") == schema.END_OK

    @property
    def rank(self) -> int:
        return int(self.header.get("rank", 0))

    @property
    def ended_how(self) -> str:
        if self.end is None:
            return "incomplete (no end record: the process was killed or crashed hard)"
        if self.end.get("status") == schema.END_OK:
            return "complete"
        if self.end.get("status") == schema.END_INTERRUPTED:
            return "interrupted by a signal"
        return f"ended by exception: {self.end.get('error', '?')}"


@dataclass
class Run:
    """A run directory: one trace per rank."""

    path: Path
    traces: dict[int, Trace]

    @property
    def primary(self) -> Trace:
        """The trace compared by default: rank 0."""
        return self.traces[min(self.traces)]


def _fail(path: Path, line: int, what: str) -> TraceError:
    return TraceError(f"{path}:{line}: {what}")


def _check_header(path: Path, record: dict[str, Any]) -> None:
    if record.get("type") != schema.HEADER or record.get("schema") != schema.SCHEMA_NAME:
        raise _fail(path, 1, "not a parity trace (first line is not a parity.trace header)")
    version = record.get("version")
    if version not in schema.READABLE_VERSIONS:
        raise _fail(path, 1, f"wrong schema: version {version} instead of {schema.SCHEMA_VERSION}")


def load_trace(path: str | Path) -> Trace:
    """Read one trace file. A trailing half-written line (the process died mid-write) is dropped."""
    # Decoding builds millions of small containers; the cyclic GC would rescan them over and over
    # (it doubled load time on a 100k-step trace) and none of them can form a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_trace(Path(path))
    finally:
        # Move the decoded records out of the collector's view: later allocation-heavy work (checks,
        # imports) would otherwise trigger full collections that rescan every record.
        gc.freeze()
        if enabled:
            gc.enable()


def _load_trace(path: Path) -> Trace:
    try:
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace: {exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise _fail(path, 1, "empty file, not a parity trace")
    trace: Trace | None = None
    for lineno, line in enumerate(lines, start=1):
        last = lineno == len(lines)
        try:
            record = _loads(line)
        except (json.JSONDecodeError, _FastDecodeError) as exc:
            # The writer emits a record and its newline in one write, so only a last line without its
            # newline can have been cut off by a kill; anything else is corruption.
            if last and trace is not None and not text.endswith("\n"):
                break
            raise _fail(path, lineno, f"not valid JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(record, dict) or record.get("type") not in schema.RECORD_TYPES:
            if trace is None:
                raise _fail(path, lineno, "not a parity trace (first line is not a parity.trace header)")
            raise _fail(path, lineno, f"unknown record type {record.get('type') if isinstance(record, dict) else record!r}")
        if trace is None:
            _check_header(path, record)
            trace = Trace(path=path, header=record)
            continue
        kind = record["type"]
        if kind == schema.STEP:
            expected = len(trace.steps)
            if record.get("step") != expected:
                raise _fail(path, lineno, f"step {record.get('step')} out of order (expected {expected})")
            trace.steps.append(record)
        elif kind == schema.META:
            if "key" not in record:
                raise _fail(path, lineno, "meta record without 'key'")
            trace.meta[record["key"]] = record.get("value")
        elif kind == schema.END:
            trace.end = record
        else:
            raise _fail(path, lineno, "second header in one trace")
    assert trace is not None
    return trace


def load_run(directory: str | Path) -> Run:
    """Read every rank's trace in a run directory (or a single trace file)."""
    directory = Path(directory)
    if directory.is_file():
        trace = load_trace(directory)
        return Run(path=directory, traces={trace.rank: trace})
    if not directory.is_dir():
        raise TraceError(f"{directory}: no such run directory (record one with `parity record --out {directory} -- ...`)")
    files = sorted(directory.glob(schema.TRACE_GLOB))
    if not files:
        raise TraceError(f"{directory}: no trace files ({schema.TRACE_GLOB}); did the command create an optimizer?")
    traces: dict[int, Trace] = {}
    for f in files:
        trace = load_trace(f)
        if trace.rank in traces:
            # Picking either would compare half of a mixed-up run; only the user knows which is theirs.
            raise TraceError(f"{directory}: two traces for rank {trace.rank}: {traces[trace.rank].path.name} and "
                             f"{f.name} (two processes with one rank recorded here); move one of them out")
        traces[trace.rank] = trace
    return Run(path=directory, traces=traces)
