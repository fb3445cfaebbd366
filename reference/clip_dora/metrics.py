"""Run outputs that comparisons read: the per-step `losses.jsonl` and the end-of-run `final.json`.

Losses are logged with their exact bits (`float.hex`), because the pair exists to
show bit-exact versus not-bit-exact resumes and a rounded decimal cannot tell
those apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType

LOSSES_FILE = "losses.jsonl"
"""Per-step and per-epoch loss records, one JSON object a line."""

FINAL_FILE = "final.json"
"""Summary of one invocation: where it stopped and hashes of the final DoRA parameters."""


def _plain_float(value: float) -> float | str:
    """JSON-safe float: non-finite values become the strings 'nan', 'inf', '-inf', never a placeholder."""
    return value if math.isfinite(value) else repr(value)


def _dumps(record: dict) -> str:
    return json.dumps(record, sort_keys=True, allow_nan=False)


class LossLog:
    """Appends loss records to `DIR/losses.jsonl`.

    A fresh run truncates the file; a resumed run appends, so resuming into the
    interrupted run's directory leaves one file shaped like a continuous run's.
    Every record carries `trainer`, `epoch` and `loss_hex`; training records also
    carry the global `step` and the `lr` used for that step.
    """

    def __init__(self, out: Path, trainer: str, append: bool) -> None:
        self.path = Path(out) / LOSSES_FILE
        self.trainer = trainer
        self._file = self.path.open("a" if append else "w", encoding="utf-8")

    def __enter__(self) -> LossLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._file.close()

    def _write(self, record: dict) -> None:
        record["trainer"] = self.trainer
        self._file.write(_dumps(record) + "\n")

    def train_step(self, epoch: int, step: int, loss: float, lr: float) -> None:
        """One optimizer step; `step` is 1-based and global across epochs and resumes."""
        self._write({"event": "train_step", "epoch": epoch, "step": step,
                     "loss": _plain_float(loss), "loss_hex": float(loss).hex(), "lr": _plain_float(lr)})

    def test(self, epoch: int, loss: float, best: float, epochs_no_improve: int) -> None:
        """End-of-epoch test loss with the early-stopping counters after updating on it."""
        self._write({"event": "test", "epoch": epoch, "loss": _plain_float(loss),
                     "loss_hex": float(loss).hex(), "best_test_loss": _plain_float(best),
                     "epochs_no_improve": epochs_no_improve})
        # Flushing per epoch keeps the file readable when a run is killed mid-training.
        self._file.flush()

    def early_stop(self, epoch: int, patience: int) -> None:
        """Marks that early stopping ended the run after `epoch`."""
        self._write({"event": "early_stop", "epoch": epoch, "patience": patience})


def read_losses(out: Path) -> list[dict]:
    """All records of `DIR/losses.jsonl`, in file order."""
    with (Path(out) / LOSSES_FILE).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_final(out: Path, summary: dict) -> Path:
    """Write the run summary; floats in it must already be JSON-safe via the callers' values."""
    path = Path(out) / FINAL_FILE
    safe = {key: _plain_float(value) if isinstance(value, float) else value for key, value in summary.items()}
    path.write_text(_dumps(safe) + "\n", encoding="utf-8")
    return path


def read_final(out: Path) -> dict:
    """The summary written by `write_final`."""
    return json.loads((Path(out) / FINAL_FILE).read_text(encoding="utf-8"))
