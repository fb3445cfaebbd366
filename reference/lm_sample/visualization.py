"""Training charts: seven panels in one PNG every viz interval, plus the JSON exports of the metrics.

    <output>/training_viz/training_step_000050.png   (one per viz interval)
    <output>/training_viz/training_latest.png        (a copy of the newest)

Panels: loss curve, accuracy curve, throughput, learning rate (each with its 50-step moving average
where it has one), loss vs accuracy scatter, recent performance (the last 100 steps), and a table of
the latest text samples. matplotlib runs on the Agg backend: no display is needed.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from reference.lm_sample.metrics import MetricsHistory, TextSample  # noqa: E402

STEP_TEMPLATE = "training_step_{step:06d}.png"
LATEST = "training_latest.png"
#: Steps shown by the recent-performance panel, and samples by the table.
RECENT_STEPS = 100
TABLE_ROWS = 4
#: Characters of each sample text shown in the table.
TABLE_TEXT = 48


class VisualizationManager:
    """Owns `<output>/training_viz/`: renders the charts and exports the JSON; never touches the model."""

    def __init__(self, directory: Path, history: MetricsHistory, interval: int = 50, dpi: int = 60) -> None:
        self.directory = Path(directory)
        self.history = history
        self.interval = interval
        self.dpi = dpi

    def due(self, step: int) -> bool:
        """True after every `interval` steps (step counts from 0, so after steps interval-1, 2*interval-1, ...)."""
        return (step + 1) % self.interval == 0

    def render(self, step: int) -> Path:
        """Write the chart of everything logged so far as training_step_<step+1>.png and training_latest.png."""
        self.directory.mkdir(parents=True, exist_ok=True)
        figure = plt.figure(figsize=(12, 9))
        # Fixed spacing, not tight_layout: that one draws the figure an extra time to measure it (half the cost).
        grid = figure.add_gridspec(3, 3, height_ratios=(1, 1, 0.8), hspace=0.45, wspace=0.4,
                                   left=0.06, right=0.95, top=0.92, bottom=0.04)
        steps = self.history.series("step")
        self._curve(figure.add_subplot(grid[0, 0]), steps, "loss", "Loss")
        self._curve(figure.add_subplot(grid[0, 1]), steps, "accuracy", "Next-token accuracy")
        self._curve(figure.add_subplot(grid[0, 2]), steps, "tokens_per_second", "Throughput (tokens/s)")
        self._curve(figure.add_subplot(grid[1, 0]), steps, "learning_rate", "Learning rate", average=False)
        self._scatter(figure.add_subplot(grid[1, 1]))
        self._recent(figure.add_subplot(grid[1, 2]))
        self._table(figure.add_subplot(grid[2, :]), self.history.samples[-TABLE_ROWS:])
        figure.suptitle(f"Training progress, step {step + 1}")
        path = self.directory / STEP_TEMPLATE.format(step=step + 1)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
        with warnings.catch_warnings():
            # Decoded predictions can hold characters the bundled font lacks; a box in the table is fine.
            warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
            figure.savefig(tmp, dpi=self.dpi)
        plt.close(figure)
        os.replace(tmp, path)
        latest_tmp = self.directory / f".{LATEST}.{os.getpid()}"
        shutil.copyfile(path, latest_tmp)
        os.replace(latest_tmp, self.directory / LATEST)
        return path

    def export(self) -> None:
        self.history.export(self.directory)

    def _curve(self, ax, steps: list[float], name: str, title: str, average: bool = True) -> None:  # type: ignore[no-untyped-def]
        ax.plot(steps, self.history.series(name), lw=0.8, alpha=0.5 if average else 1.0, label=name)
        if average:
            ax.plot(steps, self.history.averaged(name), lw=1.5, label=f"{self.history.window}-step average")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.locator_params(nbins=4)

    def _scatter(self, ax) -> None:  # type: ignore[no-untyped-def]
        points = ax.scatter(self.history.series("loss"), self.history.series("accuracy"),
                            c=self.history.series("step"), s=6, cmap="viridis")
        ax.figure.colorbar(points, ax=ax, label="step")
        ax.set_title("Loss vs accuracy", fontsize=9)
        ax.set_xlabel("loss", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)

    def _recent(self, ax) -> None:  # type: ignore[no-untyped-def]
        recent = self.history.steps[-RECENT_STEPS:]
        steps = [m.step for m in recent]
        ax.plot(steps, [m.loss for m in recent], color="tab:red", lw=1)
        ax.set_ylabel("loss", color="tab:red", fontsize=8)
        twin = ax.twinx()
        twin.plot(steps, [m.accuracy for m in recent], color="tab:blue", lw=1)
        twin.set_ylabel("accuracy", color="tab:blue", fontsize=8)
        ax.set_title(f"Recent performance (last {len(recent)} steps)", fontsize=9)

    @staticmethod
    def _table(ax, samples: list[TextSample]) -> None:  # type: ignore[no-untyped-def]
        ax.axis("off")
        ax.set_title("Text samples (input / prediction)", fontsize=9)
        if not samples:
            ax.text(0.5, 0.5, "no samples yet", ha="center", va="center")
            return

        def cut(text: str) -> str:
            # Predictions of an untrained model are arbitrary ids: control characters have no glyph.
            shown = "".join(c if c.isprintable() else "·" for c in text)
            return textwrap.shorten(shown, TABLE_TEXT, placeholder="...") or "-"

        rows = [[str(s.step), cut(s.input), cut(s.prediction)] for s in samples]
        table = ax.table(cellText=rows, colLabels=["step", "input", "prediction"], loc="center",
                         colWidths=[0.08, 0.46, 0.46], cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
