"""A background thread that finishes GPU steps: waits for their device values, resolves and writes them.

On a fast GPU step the host time a recorder spends after the optimizer update lands between the
last kernel of one step and the first of the next, where the GPU has nothing queued: every
millisecond of it is a millisecond of step time. Resolving a step (hashing hundreds of sums,
encoding and writing the JSON line) needs no device work, so it runs here instead, while the
trainer's thread launches the next step or waits in a synchronisation (which releases the GIL).

Steps are finished in the order they were handed over, on one thread, so the trace stays in step
order. `drain` waits until every handed-over step is written; the recorder calls it before writing
anything that must follow the steps (the end record) and when it closes.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

#: What the recorder hands over: (record, transfer); the recorder's function that finishes one.
Finish = Callable[[dict[str, Any], Any], None]


class StepWriter:
    """One daemon thread finishing handed-over steps in order with the recorder's `finish`."""

    def __init__(self, finish: Finish) -> None:
        self._finish = finish
        self._queue: queue.Queue[tuple[dict[str, Any], Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="parity-step-writer", daemon=True)
        self._thread.start()

    def put(self, record: dict[str, Any], transfer: Any) -> None:
        self._queue.put((record, transfer))

    def drain(self) -> None:
        """Block until every step handed over so far is written."""
        self._queue.join()

    def stop(self) -> None:
        """Write what is left, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._finish(*item)  # it records its own failures in the trace; nothing escapes
            finally:
                self._queue.task_done()
