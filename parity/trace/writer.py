"""Append-only JSON Lines trace writer that leaves a readable file whatever happens to the process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from parity.trace import schema


def encode_record(record: dict[str, Any]) -> str:
    # allow_nan=False: a NaN that slipped through encoding is a bug in parity, not a value to hide.
    return json.dumps(record, sort_keys=True, allow_nan=False, separators=(",", ":"))


class TraceWriter:
    """Writes one process's trace, one record per line, flushed after every record.

    Create-only: it never appends to or truncates an existing trace. A second process with the same
    rank in one run (a command that starts two trainings without RANK set) gets a ``.pid<N>`` suffix,
    so neither trace is lost; the reader refuses such a run directory, naming both files, rather than
    silently comparing one of them. (`parity record` locks its directory, so two recordings cannot
    collide here.) A process killed at any point leaves every completed line on disk; the reader
    marks a trace without an end record as incomplete. It never syncs to disk per record (fsync per
    step would dominate small steps); the OS keeps flushed lines.
    """

    def __init__(self, directory: str | os.PathLike, rank: int) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / schema.TRACE_FILE_PATTERN.format(rank=rank)
        try:
            self._fh = open(path, "x", encoding="utf-8")
        except FileExistsError:
            path = path.with_suffix(f".pid{os.getpid()}.jsonl")
            self._fh = open(path, "x", encoding="utf-8")
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(encode_record(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
