"""Progress of a recording whose trainer output goes to a log: steps written so far, said now and then.

A pair side recorded for `report`, `gate` or `ablate` runs with its output in `output.log`; on a long run
the terminal would otherwise stay silent for minutes. The count is read from the traces themselves (only
the bytes added since the last look), so it is what parity has recorded, not what the trainer printed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from parity.trace import schema

#: Seconds between two progress lines (the first comes after this long too: short runs print nothing).
PROGRESS_SECONDS = 20.0
_STEP_MARK = b'"type":"' + schema.STEP.encode() + b'"'


class StepCounter:
    """Step records in `directory`'s trace files, counted incrementally (whole lines only)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: dict[Path, tuple[int, bytes, int]] = {}  # file -> (offset read to, partial line, steps)

    def counts(self) -> dict[str, int]:
        """Steps per trace file so far, by rank name (trace-rank0 -> rank0)."""
        for path in sorted(self.directory.glob(schema.TRACE_GLOB)):
            offset, partial, steps = self._seen.get(path, (0, b"", 0))
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                continue
            *lines, partial = (partial + chunk).split(b"\n")
            steps += sum(1 for line in lines if _STEP_MARK in line)
            self._seen[path] = (offset + len(chunk), partial, steps)
        return {path.stem.removeprefix("trace-"): steps for path, (_, _, steps) in self._seen.items()}


class RecordingProgress:
    """Called while waiting for a trainer: every PROGRESS_SECONDS, one line with the steps recorded so far."""

    def __init__(self, directory: Path) -> None:
        self._counter = StepCounter(directory)
        self._started = self._last = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SECONDS:
            return
        self._last = now
        counts = self._counter.counts()
        steps = ", ".join(f"{rank} {n}" for rank, n in counts.items()) if counts else "none yet"
        print(f"parity: still recording {self._counter.directory} ({now - self._started:.0f} s): steps {steps}",
              file=sys.stderr, flush=True)
