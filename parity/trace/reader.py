"""Read and validate trace files and run directories; every problem names the file and line."""

from __future__ import annotations

import gc
import json
import math
import re

try:  # 3-4x faster decoding of large traces; the stdlib decoder gives identical records
    from orjson import JSONDecodeError as _FastDecodeError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised by test_reader_without_orjson
    _loads, _FastDecodeError = json.loads, json.JSONDecodeError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

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
        return self.end is not None and self.end.get(schema.E_STATUS) == schema.END_OK

    @property
    def rank(self) -> int:
        return int(self.header.get(schema.H_RANK, 0))

    @property
    def ended_how(self) -> str:
        if self.end is None:
            return "incomplete (no end record: the process was killed or crashed hard)"
        if self.end.get(schema.E_STATUS) == schema.END_OK:
            return "complete"
        if self.end.get(schema.E_STATUS) == schema.END_INTERRUPTED:
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


# -- field types ---------------------------------------------------------------------------------
# Checks index into records without guarding every access, so a field of the wrong type must be
# refused here, once, naming the line: a spec is a type (or tuple of types), `[spec]` (a list of
# spec), `{key: spec}` (a dict whose listed keys, when present, match; others are free), `_Opt(spec)`
# (spec or null, and a key that may be missing), `_Each(spec)` (a dict of any keys whose values
# match), or `_ANY`. In a record's own fields every key may be missing (older versions lack some);
# inside a field, a key not wrapped in `_Opt` is required.


class _Opt:
    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Each:
    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Row:
    """A list of exactly these items, in order (model rows such as [name, shape, dtype, requires_grad])."""

    def __init__(self, *specs: Any) -> None:
        self.specs = specs


_ANY = object()
_NUMBER = (int, float)
#: A recorded float: a JSON number or one of the non-finite spellings the writer uses.
_FLOAT = "float"
_NON_FINITE = (schema.V_NAN, schema.V_INF, schema.V_NEG_INF)
_HEX = "hex"
_BITS = {schema.S_BITS: _HEX, schema.S_DTYPE: str, schema.S_VALUE: _FLOAT}
#: A loss (under GradScaler with the scale it was multiplied by) or a gradient norm.
_SCALAR = {**_BITS, schema.S_SCALE: _Opt(_BITS), schema.S_SOURCE: _Opt(str)}

_HEADER_SPEC = {
    schema.H_VERSION: int, schema.H_RANK: int, schema.H_PID: _Opt(int), schema.H_LEVEL: str, schema.H_SEED: _Opt(int),
    schema.H_DETERMINISTIC: bool, schema.H_SKIP_LOADS: [str], schema.H_DIGEST: str,
    schema.H_RUN: {schema.RUN_ARGV: _Opt([str]), schema.RUN_CWD: _Opt(str), schema.RUN_NUMERICS: _Opt(_Each(_ANY)),
                   schema.RUN_ENV: _Opt(_Each(_ANY)),
                   schema.RUN_GIT: _Opt({schema.GIT_ROOT: _Opt(str), schema.GIT_COMMIT: _Opt(str),
                                         schema.GIT_DIRTY: _Opt(_ANY)})},
}
_STEP_SPEC = {
    schema.F_STEP: int, schema.F_EVENTS: [str], schema.F_LOSSES: [_SCALAR], schema.F_GROUPS: [_Each(_ANY)],
    schema.F_GRAD_NORM: _Opt(_SCALAR),
    schema.F_CLIP: _Opt({schema.CLIP_MAX_NORM: _Opt(_FLOAT), schema.CLIP_NORM_TYPE: _Opt(_FLOAT)}),
    schema.F_BATCH: _Opt([str]), schema.F_LOADER: _Opt([str]), schema.F_PARAMS: _Opt(str),
    schema.F_OPTIM_STATE: _Opt(str), schema.F_RNG: _Opt(_Each(_Opt(str))), schema.F_WALL_MS: _Opt(_NUMBER),
    schema.F_PEAK_MEM: _Opt(int), schema.F_SKIPPED: _Opt(bool),
    schema.F_FIELDS: _Opt([_Each(str)]), schema.F_SAMPLES: _Opt(str),
    schema.F_LABELS: _Opt({schema.LABELS_FIELD: str, schema.LABELS_HIST: _Each(int)}), schema.F_EPOCH: _Opt(int),
    schema.F_MODE: _Opt({schema.MODE_ROOT: str, schema.MODE_TRAINING: bool, schema.MODE_EVAL_MODULES: [str],
                         schema.MODE_N_EVAL: int}),
}
_META_SPECS = {
    schema.META_ARGPARSE: _Each(_ANY), schema.META_OPTIMIZERS: [{schema.OPT_CLASS: str, schema.OPT_DEFAULTS: _Each(_ANY)}],
    schema.META_SCHEDULERS: [{schema.OPT_CLASS: str, schema.SCHED_STATE: _Each(_ANY)}],
    schema.META_NUMERICS_AT_END: _Each(_ANY),
    schema.META_MODEL: _Opt({schema.MODEL_ROOTS: [{schema.ROOT_CLASS: str,
                                                   schema.ROOT_MODULES: [[str]],  # [fqn, class(, settings)]
                                                   schema.ROOT_PARAMS: [_Row(str, [int], str, bool)],
                                                   schema.ROOT_BUFFERS: [_Row(str, [int], str)],
                                                   schema.ROOT_N_PARAMS: int, schema.ROOT_N_TRAINABLE: int}],
                             schema.MODEL_OPTIMIZER_ONLY: [_Row([int], str, bool)]}),
    schema.META_DATALOADERS: [{schema.DL_CLASS: str,
                               schema.DL_DATASET: _Opt({schema.DS_CLASS: str, schema.DS_LEN: _Opt(int),
                                                        schema.DS_RAW: _Opt({schema.RAW_ORDERED: str, schema.RAW_SET: str,
                                                                             schema.RAW_N: int}),
                                                        schema.DS_ATTRS: _Each(_ANY)})}],
    schema.META_CONFIG_OBJECTS: _Each(_ANY),
    schema.META_SOURCES: _Opt({schema.SRC_ROOT: _Opt(str), schema.SRC_GIT: _Opt(_Each(_ANY)),
                               schema.SRC_FILES: _Each({schema.FILE_MODULE: _Opt(str), schema.FILE_SHA: str,
                                                        schema.FILE_FUNCTIONS: _Each(str)})}),
    schema.META_RNG_AT_FIRST_BATCH: _Opt(_Each(_Opt(str))),
}
_END_SPEC = {schema.E_STATUS: str, schema.E_ERROR: _Opt(str), schema.E_STEPS: _Opt(int),
             schema.E_TRAILING_EVENTS: _Opt([str])}


def _mismatch(value: Any, spec: Any, where: str, record: bool = False) -> str | None:
    """Where `value` first departs from `spec` and how, or None when it conforms."""
    if spec is _ANY:
        return None
    if isinstance(spec, _Opt):
        return None if value is None else _mismatch(value, spec.spec, where)
    if spec is _FLOAT:
        if isinstance(value, _NUMBER) and not isinstance(value, bool) and math.isfinite(value) or value in _NON_FINITE:
            return None
        return f"{where}: expected a number or one of {'/'.join(_NON_FINITE)}, got {_shown(value)}"
    if spec is _HEX:
        if isinstance(value, str) and value and all(c in "0123456789abcdefABCDEF" for c in value):
            return None
        return f"{where}: expected hexadecimal bits, got {_shown(value)}"
    if isinstance(spec, _Row):
        if not isinstance(value, list) or len(value) != len(spec.specs):
            return f"{where}: expected a list of {len(spec.specs)} items, got {_shown(value)}"
        for index, (item, child) in enumerate(zip(value, spec.specs)):
            if (problem := _mismatch(item, child, f"{where}[{index}]")) is not None:
                return problem
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {_shown(value)}"
        for index, item in enumerate(value):
            if (problem := _mismatch(item, spec[0], f"{where}[{index}]")) is not None:
                return problem
        return None
    if isinstance(spec, (dict, _Each)):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {_shown(value)}"
        if isinstance(spec, dict) and not record:
            missing = [k for k, child in spec.items() if k not in value and not isinstance(child, _Opt)]
            if missing:
                return f"{where}: no {missing[0]!r} in {_shown(value)}"
        pairs = ((k, spec[k]) for k in spec if k in value) if isinstance(spec, dict) else ((k, spec.spec) for k in value)
        for key, child in pairs:
            if (problem := _mismatch(value[key], child, f"{where}.{key}")) is not None:
                return problem
        return None
    # JSON true/false decode as bool, a subclass of int: a flag is never a count and vice versa.
    if isinstance(value, bool) and bool not in (spec if isinstance(spec, tuple) else (spec,)):
        return f"{where}: expected {_type_name(spec)}, got {_shown(value)}"
    if isinstance(value, spec) and not (isinstance(value, float) and not math.isfinite(value)):
        return None
    return f"{where}: expected {_type_name(spec)}, got {_shown(value)}"


def _type_name(spec: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return " or ".join(names.get(t, t.__name__) for t in (spec if isinstance(spec, tuple) else (spec,)))


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _compile(spec: Any, record: bool = False) -> Callable[[Any], bool]:
    """A yes/no test equivalent to `_mismatch(...) is None`, built once per spec: a 100k-step trace is
    checked at a small fraction of its decoding time; `_mismatch` then explains the rare failure."""
    if spec is _ANY:
        return lambda v: True
    if isinstance(spec, _Opt):
        if isinstance(spec.spec, type):
            allowed = frozenset((type(None), spec.spec))
            return lambda v: type(v) in allowed and (type(v) is not float or math.isfinite(v))
        inner = _compile(spec.spec)
        return lambda v: v is None or inner(v)
    if spec is _FLOAT:
        return lambda v: (type(v) is float and math.isfinite(v)) or type(v) is int or v in _NON_FINITE
    if spec is _HEX:
        return lambda v: type(v) is str and _HEX_DIGITS(v) is not None
    if isinstance(spec, _Row):
        items, n = [_compile(s) for s in spec.specs], len(spec.specs)
        return lambda v: type(v) is list and len(v) == n and all(f(x) for f, x in zip(items, v))
    if isinstance(spec, list):
        if spec[0] is str:  # event lists: the longest lists in a trace, checked by C loops
            return lambda v: type(v) is list and (not v or set(map(type, v)) == _ONLY_STR)
        item = _compile(spec[0])
        return lambda v: type(v) is list and all(item(x) for x in v)
    if isinstance(spec, _Each):
        if spec.spec is _ANY:
            return lambda v: type(v) is dict
        item = _compile(spec.spec)
        return lambda v: type(v) is dict and all(item(x) for x in v.values())
    if isinstance(spec, dict):
        children = [(key, _compile(child), record or isinstance(child, _Opt)) for key, child in spec.items()]

        def fits(v: Any) -> bool:
            if type(v) is not dict:
                return False
            for key, child_fits, may_be_missing in children:
                value = v.get(key, _MISSING)
                if value is _MISSING:
                    if not may_be_missing:
                        return False
                elif not child_fits(value):
                    return False
            return True

        return fits
    exact = frozenset(spec if isinstance(spec, tuple) else (spec,))
    return lambda v: type(v) in exact and (type(v) is not float or math.isfinite(v))


_ONLY_STR = {str}
_MISSING = object()
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+").fullmatch
_COMPILED: dict[tuple[int, bool], Callable[[Any], bool]] = {}


def _check_fields(path: Path, line: int, record: Any, spec: Any, kind: str, whole_record: bool = True) -> None:
    key = (id(spec), whole_record)
    fits = _COMPILED.get(key) or _COMPILED.setdefault(key, _compile(spec, whole_record))
    if fits(record):
        return
    problem = _mismatch(record, spec, kind, record=whole_record) or f"{kind}: {_shown(record)}"
    if problem is not None:
        raise _fail(path, line, f"wrong type: {problem}")


def _check_header(path: Path, record: dict[str, Any]) -> None:
    if record.get(schema.F_TYPE) != schema.HEADER or record.get(schema.H_SCHEMA) != schema.SCHEMA_NAME:
        raise _fail(path, 1, "not a parity trace (first line is not a parity.trace header)")
    version = record.get(schema.H_VERSION)
    if version not in schema.READABLE_VERSIONS or isinstance(version, bool):
        raise _fail(path, 1, f"wrong schema: version {_shown(version)} instead of {schema.SCHEMA_VERSION}")
    _check_fields(path, 1, record, _HEADER_SPEC, "header")
    if record.get(schema.H_RANK, 0) < 0:
        raise _fail(path, 1, f"header.rank: expected a rank >= 0, got {record[schema.H_RANK]}")


def load_trace(path: str | Path) -> Trace:
    """Read one trace file. A trailing half-written line (the process died mid-write) is dropped.

    A large trace is read through its columnar cache (parity.trace.cache), built on the first read: its
    steps are then a LazySteps, decoded line by line on demand, and the checks scan its columns."""
    # Decoding builds millions of small containers; the cyclic GC would rescan them over and over
    # (it doubled load time on a 100k-step trace) and none of them can form a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        path = Path(path)
        return _load_columnar(path) or _load_trace(path)
    finally:
        # Move the decoded records out of the collector's view: later allocation-heavy work (checks,
        # imports) would otherwise trigger full collections that rescan every record.
        gc.freeze()
        if enabled:
            gc.enable()


def _load_trace(path: Path) -> Trace:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace: {exc}") from None
    return parse_trace(text, path)


def parse_trace(text: str, path: Path) -> Trace:
    """Parse and validate a trace held in memory (a decompressed golden); `path` names it in errors."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise _fail(path, 1, "empty file, not a parity trace")
    steps: list[dict[str, Any]] = []
    cut_off_ok = not text.endswith("\n")
    numbered = ((lineno, line, cut_off_ok and lineno == len(lines), None) for lineno, line in enumerate(lines, start=1))
    trace = _parse(numbered, path, lambda record, _: steps.append(record))
    trace.steps = steps
    return trace


def _parse(lines: Iterator[tuple[int, str | bytes, bool, Any]], path: Path,
           on_step: Callable[[dict[str, Any], Any], None]) -> Trace:
    """Validate (lineno, line, may be cut off, where) lines into a Trace; each step record goes to `on_step`
    with its `where` instead of into the trace."""
    trace: Trace | None = None
    count = 0
    for lineno, line, may_be_cut, where in lines:
        try:
            record = _loads(line)
        except (json.JSONDecodeError, _FastDecodeError) as exc:
            # The writer emits a record and its newline in one write, so only a last line without its
            # newline can have been cut off by a kill; anything else is corruption.
            if may_be_cut and trace is not None:
                break
            raise _fail(path, lineno, f"not valid JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(record, dict) or record.get(schema.F_TYPE) not in schema.RECORD_TYPES:
            if trace is None:
                raise _fail(path, lineno, "not a parity trace (first line is not a parity.trace header)")
            raise _fail(path, lineno, f"unknown record type {record.get(schema.F_TYPE) if isinstance(record, dict) else record!r}")
        if trace is None:
            _check_header(path, record)
            trace = Trace(path=path, header=record)
            continue
        kind = record[schema.F_TYPE]
        if kind == schema.STEP:
            step = record.get(schema.F_STEP)
            if step != count or isinstance(step, bool):
                raise _fail(path, lineno, f"step {_shown(step)} out of order (expected {count})")
            _check_fields(path, lineno, record, _STEP_SPEC, "step")
            on_step(record, where)
            count += 1
        elif kind == schema.META:
            key = record.get(schema.M_KEY)
            if not isinstance(key, str):
                raise _fail(path, lineno, f"meta record without a string {schema.M_KEY!r}")
            spec = _META_SPECS.get(key, _ANY)
            _check_fields(path, lineno, record.get(schema.M_VALUE), spec, f"meta {key}", whole_record=False)
            trace.meta[key] = record.get(schema.M_VALUE)
        elif kind == schema.END:
            _check_fields(path, lineno, record, _END_SPEC, "end")
            trace.end = record
        else:
            raise _fail(path, lineno, "second header in one trace")
    if trace is None:
        raise _fail(path, 1, "empty file, not a parity trace")
    return trace


# -- large traces: columns and a cache --------------------------------------------------------------

class _NotStreamable(Exception):
    """The streaming read met something only the whole-file read reports exactly (bad UTF-8)."""


def _load_columnar(path: Path) -> Trace | None:
    """The trace read through its columnar cache (built and stored when missing or stale); None when the
    trace is small, caching is off, or the file has a problem: the whole-file read then reports it."""
    from parity.trace import cache

    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_size < cache.CACHE_MIN_BYTES or not cache.cache_enabled():
        return None
    try:
        key = cache.trace_key(path, st)
    except OSError:
        return None
    stored = cache.read_cache(path, key)
    if stored is None:
        try:
            stored = _build_columns(path)
        except (TraceError, OSError, _NotStreamable):
            return None
        if cache.trace_key(path, path.stat()) == key:  # not appended to while it was read
            cache.write_cache(path, key, stored)
    from parity.trace.lazy import LazySteps

    records = stored.records
    steps = LazySteps(path, stored.starts, stored.ends, stored.columns)
    return Trace(path=path, header=records["header"], meta=records["meta"], steps=steps, end=records["end"])


def _build_columns(path: Path) -> Any:
    """Validate the trace line by line (never holding more than one record) into a CachedTrace."""
    from array import array

    import numpy as np

    from parity.trace.cache import CachedTrace
    from parity.trace.columns import ColumnBuilder

    builder = ColumnBuilder(json_values=True)
    starts, ends = array("q"), array("q")

    def on_step(record: dict[str, Any], where: tuple[int, int]) -> None:
        builder.add(record)
        starts.append(where[0])
        ends.append(where[1])

    with open(path, "rb") as fh:
        trace = _parse(_file_lines(fh), path, on_step)
    records = {"header": trace.header, "meta": trace.meta, "end": trace.end}
    return CachedTrace(records, np.frombuffer(starts, dtype=np.int64) if starts else np.zeros(0, np.int64),
                       np.frombuffer(ends, dtype=np.int64) if ends else np.zeros(0, np.int64), builder.finish())


def _file_lines(fh: Any) -> Iterator[tuple[int, bytes, bool, tuple[int, int]]]:
    offset = 0
    for lineno, raw in enumerate(fh, start=1):
        complete = raw.endswith(b"\n")
        line = raw[:-1] if complete else raw
        if not complete:
            try:  # a cut-off line is dropped only where the whole file is text, as the whole-file read requires
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise _NotStreamable from None
        yield lineno, line, not complete, (offset, offset + len(line))
        offset += len(raw)


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
