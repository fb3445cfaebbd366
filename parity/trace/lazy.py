"""Step records read from the trace file on demand: a list-like view of a large trace's steps.

Checks read a large trace through its columns; the few step records they quote as evidence (the first
divergent step, the last compared one) are decoded from their own lines, and only a consumer that walks
every record (plots, bands) pays for decoding them all, once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

import numpy as np

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the reader's fallback, kept here too
    from json import loads as _loads

from parity.trace.columns import StepColumns


class LazySteps(Sequence):
    """The step records of one trace file, decoded when indexed; behaves as the list the reader builds.

    Holds the file open from the moment it was validated, so that a trace replaced on disk afterwards
    cannot feed it other lines. Records were validated when the columns were built; they are not again.
    Never writes to the file.
    """

    def __init__(self, path: Path, starts: np.ndarray, ends: np.ndarray, columns: StepColumns) -> None:
        self.path, self.columns = path, columns
        self._starts, self._ends = starts, ends
        self._fd: int | None = os.open(path, os.O_RDONLY)
        self._decoded: dict[int, dict[str, Any]] = {}
        self._all: list[dict[str, Any]] | None = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.records()[index]
        if self._all is not None:
            return self._all[index]
        i = range(len(self))[index]  # IndexError and negative indices as a list has them
        record = self._decoded.get(i)
        if record is None:
            start, end = int(self._starts[i]), int(self._ends[i])
            record = self._decoded[i] = _loads(os.pread(self._fd, end - start, start))
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (LazySteps, list)):
            return self.records() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-list semantics, as the list it stands for

    def __repr__(self) -> str:
        return f"LazySteps({self.path}, {len(self)} steps)"

    def __reduce__(self) -> Any:
        return list, (self.records(),)

    def __deepcopy__(self, memo: dict) -> list[dict[str, Any]]:
        import copy

        return copy.deepcopy(self.records(), memo)

    def records(self) -> list[dict[str, Any]]:
        """Every step record, decoded once (a large trace's records take several times its file size)."""
        if self._all is None:
            if not len(self):
                self._all = []
            else:
                first, last = int(self._starts[0]), int(self._ends[-1])
                data = os.pread(self._fd, last - first, first)
                decoded = self._decoded
                self._all = [decoded.get(i) or _loads(data[s - first:e - first])
                             for i, (s, e) in enumerate(zip(self._starts.tolist(), self._ends.tolist()))]
        return self._all
