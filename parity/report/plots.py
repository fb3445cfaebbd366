"""PNG plots for a report: loss curves overlaid, |delta loss| per step (log scale), LR curves."""

from __future__ import annotations

import io
from pathlib import Path

from parity.report.render import write_atomic
from parity.trace.reader import Trace
from parity.trace.records import StepView


def _series(trace: Trace, kind: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the first loss ("loss") or group 0's learning rate ("lr"), where recorded."""
    xs, ys = [], []
    for record in trace.steps:
        step = StepView(record)
        if kind == "loss":
            loss = step.first_loss
            value = None if loss is None else loss.as_float()
        else:
            value = step.lr
        if value is not None:
            xs.append(step.index); ys.append(value)
    return xs, ys


def write_plots(baseline: Trace, candidate: Trace, stem: Path, labels: tuple[str, str]) -> dict[str, Path]:
    """Write `<stem>-loss.png`, `<stem>-dloss.png` and `<stem>-lr.png`; return them by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, Path] = {}

    def save(fig, kind: str) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        path = stem.parent / f"{stem.name}-{kind}.png"
        write_atomic(path, buf.getvalue())
        out[kind] = path

    for field, ylabel in (("loss", "loss (first backward of the step)"), ("lr", "lr (group 0)")):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for trace, label, style in ((baseline, labels[0], "-"), (candidate, labels[1], "--")):
            ax.plot(*_series(trace, field), style, label=label)
        ax.set_xlabel("step"); ax.set_ylabel(ylabel); ax.legend(); ax.grid(alpha=0.3)
        save(fig, field)
    xa, ya = _series(baseline, "loss")
    xb, yb = _series(candidate, "loss")
    common = dict(zip(xa, ya))
    diffs = [(x, abs(common[x] - y)) for x, y in zip(xb, yb) if x in common]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    nonzero = [(x, d) for x, d in diffs if d > 0]
    if nonzero:
        ax.semilogy(*zip(*nonzero), ".-")
    else:
        ax.text(0.5, 0.5, "|delta loss| = 0 at every step (bit-identical)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step"); ax.set_ylabel("|loss_candidate - loss_baseline|"); ax.grid(alpha=0.3)
    save(fig, "dloss")
    return out
