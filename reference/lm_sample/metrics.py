"""Per-step training metrics, their moving averages, text samples, and the two JSON files they are exported to.

    <output>/training_viz/metrics_history.json   {"schema": "lm-metrics/1", "window": 50, "metrics": [...],
                                                  "moving_averages": {"loss": [...], ...}}
    <output>/training_viz/text_samples.json      {"schema": "lm-text-samples/1", "samples": [...]}

Both are written whole, under a temporary name renamed into place, so a reader never sees half a file.
Non-finite values (a diverged loss) are written as null.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

METRICS_FILE = "metrics_history.json"
SAMPLES_FILE = "text_samples.json"
METRICS_SCHEMA = "lm-metrics/1"
SAMPLES_SCHEMA = "lm-text-samples/1"
#: Channels that get a moving average in the export and the charts.
AVERAGED = ("loss", "accuracy", "tokens_per_second")
#: Text samples kept (the JSON keeps them all up to this many, the chart shows the last few).
MAX_SAMPLES = 200


@dataclass
class TrainingMetrics:
    """One optimizer step as both trainers log it."""

    step: int
    loss: float
    accuracy: float
    learning_rate: float
    tokens: int
    """Targets the loss counted this step (padding excluded)."""
    tokens_per_second: float
    total_tokens: int
    step_seconds: float
    timestamp: float = field(default_factory=time.time)
    gpu_memory_mb: float | None = None
    """Peak CUDA memory allocated so far; None on CPU."""
    cpu_memory_mb: float | None = None
    """Peak resident memory of the process so far."""


@dataclass
class TextSample:
    """What the model predicted for the start of one training row, next to the text it was trained on."""

    step: int
    input: str
    target: str
    prediction: str


def peak_memory_mb(device: str) -> tuple[float | None, float]:
    """(peak CUDA memory allocated, peak resident memory of the process), in MiB."""
    import torch

    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") and torch.cuda.is_available() else None
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return gpu, rss_kb / (2**20 if sys.platform == "darwin" else 2**10)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start); non-finite values are skipped."""
    out, acc, kept = [], 0.0, []
    for v in values:
        finite = math.isfinite(v)
        kept.append(v if finite else None)
        acc += v if finite else 0.0
        if len(kept) > window:
            old = kept.pop(0)
            acc -= old if old is not None else 0.0
        n = sum(x is not None for x in kept)
        out.append(acc / n if n else math.nan)
    return out


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(_finite(payload), indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class MetricsHistory:
    """Every step's metrics and the text samples of a run; restored from its JSON export on resume."""

    def __init__(self, window: int = 50) -> None:
        self.window = window
        self.steps: list[TrainingMetrics] = []
        self.samples: list[TextSample] = []

    def add(self, metrics: TrainingMetrics) -> None:
        self.steps.append(metrics)

    def add_sample(self, sample: TextSample) -> None:
        self.samples = [*self.samples, sample][-MAX_SAMPLES:]

    def series(self, name: str) -> list[float]:
        return [float(getattr(m, name)) for m in self.steps]

    def averaged(self, name: str) -> list[float]:
        return moving_average(self.series(name), self.window)

    def export(self, directory: Path) -> None:
        """Write metrics_history.json and text_samples.json into `directory`."""
        write_json(directory / METRICS_FILE, {
            "schema": METRICS_SCHEMA, "window": self.window, "metrics": [asdict(m) for m in self.steps],
            "moving_averages": {name: self.averaged(name) for name in AVERAGED}})
        write_json(directory / SAMPLES_FILE, {"schema": SAMPLES_SCHEMA, "samples": [asdict(s) for s in self.samples]})

    def restore(self, directory: Path, up_to_step: int) -> None:
        """Read a previous export back, keeping steps before `up_to_step` (a resumed run continues the curves)."""
        names = {f.name for f in fields(TrainingMetrics)}
        try:
            metrics = json.loads((directory / METRICS_FILE).read_text())["metrics"]
            samples = json.loads((directory / SAMPLES_FILE).read_text())["samples"]
        except (OSError, ValueError, KeyError):
            return  # nothing usable exported yet: the curves start at the resume step
        self.steps = [TrainingMetrics(**{k: (math.nan if v is None else v) if k in ("loss", "accuracy") else v
                                         for k, v in m.items() if k in names})
                      for m in metrics if m["step"] < up_to_step]
        self.samples = [TextSample(**s) for s in samples if s["step"] < up_to_step]
