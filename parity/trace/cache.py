"""The columnar cache of a trace: its validated header, meta and end records, step line offsets and step
columns, stored in one file so that a second read of a large trace skips decoding and validation.

The JSON Lines trace stays the source of truth. A cache is used only when its key matches the trace as it
is now (size, modification time, and a hash of the head, the tail and blocks sampled between them) and its
own checksum matches its content; anything else (another layout, a half-written or corrupt file, a trace
appended to since) is ignored and the cache rebuilt, silently. Where it lives: beside the trace
(`.trace-rank0.jsonl.columns`), or, where the run directory is read-only, under the user's cache directory;
where neither can be written the trace is simply decoded every time.

File layout: MAGIC, an 8-byte little-endian length, that many bytes of JSON (key, records, tables, array
directory, checksum), then the arrays, each 8-byte aligned. No pickles: arrays are raw numpy buffers.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from parity.trace import schema
from parity.trace.columns import ARRAYS, LAYOUT_VERSION, TABLES, StepColumns

# $set_env.py: PARITY_TRACE_CACHE - "off" reads every trace from its JSON Lines; a directory keeps every
# trace's columnar cache there instead of beside the trace.
CACHE_ENV = "PARITY_TRACE_CACHE"
CACHE_OFF = "off"
#: Traces smaller than this are decoded directly: a cache would cost more than it saves.
CACHE_MIN_BYTES = 1 << 20
#: Bump when validation or the cached records change meaning, so that older caches are rebuilt.
READER_VERSION = 1
MAGIC = b"PARITY-COLUMNS\n\x00"
_EDGE = 64 << 10
_BLOCK, _BLOCKS = 4 << 10, 16


def cache_enabled() -> bool:
    return os.environ.get(CACHE_ENV, "").strip().lower() != CACHE_OFF


def trace_key(path: Path, st: os.stat_result) -> dict[str, Any]:
    """What identifies the trace's content for the cache: size, mtime and a hash of sampled blocks."""
    digest = hashlib.blake2b(digest_size=16)
    size = st.st_size
    with open(path, "rb") as fh:
        if size <= 2 * _EDGE + _BLOCK * _BLOCKS:
            digest.update(fh.read())
        else:
            for offset in [0] + [_EDGE + (size - 2 * _EDGE) * k // _BLOCKS for k in range(_BLOCKS)] + [size - _EDGE]:
                fh.seek(offset)
                digest.update(fh.read(_EDGE if offset in (0, size - _EDGE) else _BLOCK))
    return {"size": size, "mtime_ns": st.st_mtime_ns, "sampled": digest.hexdigest(), "layout": LAYOUT_VERSION,
            "reader": READER_VERSION, "schema": schema.SCHEMA_VERSION}


def cache_locations(path: Path) -> list[Path]:
    """Where the cache of `path` may be, in the order they are tried."""
    name = f".{path.name}.columns"
    hashed = hashlib.blake2b(str(path.resolve()).encode(), digest_size=16).hexdigest() + ".columns"
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen:
        return [Path(chosen).expanduser() / hashed]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "parity" / "traces" / hashed
    return [path.parent / name, user]


class CachedTrace:
    """What a cache holds: the trace's records other than steps, where each step's line is, its columns."""

    def __init__(self, records: dict[str, Any], starts: np.ndarray, ends: np.ndarray, columns: StepColumns) -> None:
        self.records, self.starts, self.ends, self.columns = records, starts, ends, columns


def read_cache(path: Path, key: dict[str, Any]) -> CachedTrace | None:
    """The cache of `path` if one matches `key` and is intact; None otherwise (never raises)."""
    for location in cache_locations(path):
        try:
            data = location.read_bytes()
        except OSError:
            continue
        try:
            return _decode(data, key)
        except Exception:  # noqa: BLE001 - whatever is wrong with a cache, it is rebuilt, never trusted
            continue
    return None


def _decode(data: bytes, key: dict[str, Any]) -> CachedTrace | None:
    if not data.startswith(MAGIC):
        return None
    (length,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    head = orjson.loads(data[start:start + length])
    if head["key"] != key:
        return None
    payload = memoryview(data)[_aligned(start + length):]
    if zlib.crc32(payload) != head["crc32"]:
        return None
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, count, offset, constant in head["arrays"]:
        if constant is not None:
            arrays[name] = np.broadcast_to(np.array(constant, dtype=dtype), (count,))
        else:
            arrays[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
    n = head["n"]
    starts, ends = arrays.pop("_starts"), arrays.pop("_ends")
    if len(starts) != n or len(ends) != n or arrays.keys() != ARRAYS.keys() or set(head["tables"]) != set(TABLES):
        return None
    columns = StepColumns(n, arrays, head["tables"], head["irregular"])
    return CachedTrace(head["records"], starts, ends, columns)


def _constant(arr: np.ndarray) -> bool:
    if not len(arr):
        return False
    if arr.dtype.kind == "f":  # one finite value, one sign (JSON has no NaN; -0.0 == 0.0 would merge)
        return bool(np.isfinite(arr[0]) and (arr == arr[0]).all() and (np.signbit(arr) == np.signbit(arr[0])).all())
    return bool((arr == arr[0]).all())


def _aligned(offset: int) -> int:
    return (offset + 7) // 8 * 8


def write_cache(path: Path, key: dict[str, Any], cached: CachedTrace) -> Path | None:
    """Store the cache of `path` in the first location that can be written; None when none can."""
    head, chunks = _encode(key, cached)
    for location in cache_locations(path):
        try:
            location.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=location.name + ".", suffix=".tmp", dir=location.parent)
        except OSError:
            continue
        try:
            if location.parent == path.parent:  # readable by whoever can read the trace (mkstemp makes it 0600)
                os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) & 0o666)
            with os.fdopen(fd, "wb") as fh:
                fh.write(head)
                for chunk in chunks:  # one array at a time: a 1M-step cache is never copied whole
                    fh.write(chunk)
            os.replace(tmp, location)
            return location
        except OSError:
            Path(tmp).unlink(missing_ok=True)
    return None


def _encode(key: dict[str, Any], cached: CachedTrace) -> tuple[bytes, list[Any]]:
    """The file's head (magic, length, JSON, padding) and its payload as a list of buffers."""
    chunks: list[Any] = []
    directory = []
    offset, crc = 0, 0
    items = [("_starts", cached.starts), ("_ends", cached.ends), *cached.columns.arrays.items()]
    for name, arr in items:
        arr = np.ascontiguousarray(arr)
        if _constant(arr):
            # A column that never changes (no scale, one dtype, no mode recorded) costs nothing to store.
            directory.append([name, arr.dtype.str, len(arr), 0, arr[:1].tolist()[0]])
            continue
        directory.append([name, arr.dtype.str, len(arr), offset, None])
        raw = memoryview(arr).cast("B")
        padding = b"\x00" * (_aligned(len(raw)) - len(raw))
        crc = zlib.crc32(padding, zlib.crc32(raw, crc))
        chunks += [raw, padding]
        offset += _aligned(len(raw))
    head = {"key": key, "n": cached.columns.n, "records": cached.records, "tables": cached.columns.tables,
            "irregular": sorted(cached.columns.irregular), "arrays": directory, "crc32": crc}
    text = json.dumps(head, allow_nan=False, separators=(",", ":")).encode()
    start = len(MAGIC) + 8
    return MAGIC + struct.pack("<Q", len(text)) + text + b"\x00" * (_aligned(start + len(text)) - start - len(text)), chunks
