"""Compare a resumed segment with the matching steps of a continuous run, and name the missing state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from parity.checks.base import rel_diff
from parity.checks.compare import Comparison, compare_traces
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import StepView

#: What a first-diverging channel most likely means after a resume.
MISSING_STATE = {
    "lr": "lr jumps: the scheduler state (or the lr held in the optimizer's param groups) was not restored",
    "data": "batch digests differ: sampler / data-order RNG state not restored",
    "loss": "same batch, different loss: the RNG behind dropout/augmentation (or the model weights) not restored",
    "grad_norm": "same loss, different gradients: gradient scaler or accumulation state not restored",
    "params": "params differ while loss and lr match: optimizer moments not restored",
    "optimizer_state": "optimizer state differs while params match: optimizer step counters or moments not restored",
    "steps": "the resumed run has a different number of steps than the continuous run has left",
}


def shifted(trace: Trace, start: int, length: int | None = None) -> Trace:
    """The steps [start, start+length) of a trace, renumbered from 0, as a Trace of their own."""
    steps = trace.steps[start: None if length is None else start + length]
    return Trace(path=trace.path, header=trace.header, meta=trace.meta,
                 steps=[{**s, "step": i} for i, s in enumerate(steps)], end=trace.end)


@dataclass
class SegmentResult:
    """A resumed segment against the continuous run from step `offset` on."""

    at: int
    offset: int
    exact: bool
    started_from_scratch: bool
    comparison: Comparison | None
    first_divergent_step: int | None = None
    channel: str | None = None
    diagnosis: str = ""
    loss_rel: dict[str, Any] = field(default_factory=dict)
    per_unit: list[dict[str, Any]] = field(default_factory=list)
    """Per epoch (or unit) after the resume: mean train loss of the continuous and resumed runs, relative difference."""

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "offset_steps": self.offset, "exact": self.exact, "per_unit": self.per_unit,
                "started_from_scratch": self.started_from_scratch, "first_divergent_step": self.first_divergent_step,
                "channel": self.channel, "diagnosis": self.diagnosis, "loss_rel": self.loss_rel}


def _loss(step: dict) -> float | None:
    loss = StepView(step).first_loss
    return loss.as_float() if loss is not None else None


def loss_differences(continuous: Trace, resumed: Trace, offset: int) -> dict[str, Any]:
    """Relative loss difference at the first resumed step, 10% of the way to the end, and at the end."""
    n = min(len(resumed.steps), len(continuous.steps) - offset)
    if n <= 0:
        return {}
    points = {"first": 0, "plus_10pct": min(n - 1, max(1, math.ceil(0.1 * n))), "end": n - 1}
    out = {}
    for label, i in points.items():
        a, b = _loss(continuous.steps[offset + i]), _loss(resumed.steps[i])
        out[label] = {"step": offset + i, "rel": None if a is None or b is None else rel_diff(a, b)}
    return out


def per_unit_losses(continuous: Trace, resumed: Trace, offset: int, steps_per_unit: int, first_unit: int) -> list[dict[str, Any]]:
    """Mean loss per unit (epoch) after the resume, continuous vs resumed, with the relative difference."""
    out = []
    n = min(len(resumed.steps), len(continuous.steps) - offset)
    for start in range(0, n, steps_per_unit):
        idx = range(start, min(n, start + steps_per_unit))
        a = [_loss(continuous.steps[offset + i]) for i in idx]
        b = [_loss(resumed.steps[i]) for i in idx]
        if None in a or None in b or not a:
            continue
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        out.append({"unit": first_unit + start // steps_per_unit, "continuous": ma, "resumed": mb, "rel": rel_diff(ma, mb)})
    return out


def _same_as_start(continuous: Trace, resumed: Trace) -> bool:
    if not resumed.steps or not continuous.steps:
        return False
    a, b = StepView(continuous.steps[0]), StepView(resumed.steps[0])
    return bool(a.losses) and a.losses == b.losses and a.params == b.params


def compare_segment(continuous: Trace, resumed: Trace, *, at: int, offset: int, to_end: bool = True,
                    ignore_args: frozenset[str] = frozenset()) -> SegmentResult:
    """Compare `resumed` with `continuous` from step `offset` (the steps the stopped run completed).

    `to_end`: the resumed run should finish the continuous run; otherwise it is a middle segment of a
    chain that stops early on purpose, and only its own steps are compared.
    """
    scratch = offset > 0 and _same_as_start(continuous, resumed) and len(resumed.steps) > len(continuous.steps) - offset
    if scratch:
        return SegmentResult(at, offset, False, True, None, offset, "steps",
                             f"the resumed run started from scratch: its step 0 is bit-identical to the continuous run's "
                             f"step 0 and it ran {len(resumed.steps)} steps; the trainer ignores the resume flag")
    c = compare_traces(shifted(continuous, offset, len(resumed.steps)), resumed, ignore_args=ignore_args)
    result = SegmentResult(at, offset, c.verdict == schema.IDENTICAL, False, c, loss_rel=loss_differences(continuous, resumed, offset))
    if to_end and len(resumed.steps) != len(continuous.steps) - offset:
        result.exact = False
    fd = c.first_divergence
    if fd is None and not result.exact:
        fd = {"step": min(len(resumed.steps), len(continuous.steps) - offset), "channel": "steps"}
    if fd is not None:
        result.first_divergent_step = offset + fd["step"]
        result.channel = fd["channel"]
        result.diagnosis = f"step {offset + fd['step']}: {MISSING_STATE.get(fd['channel'], fd['channel'] + ' differs')}"
    return result
