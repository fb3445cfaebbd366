"""Calibrated tolerance: per-step bands of what the baseline itself varies by across repeated runs.

`parity calibrate` records the baseline K times; `compute_bands` keeps, per step, the min and max of
the loss, the pre-clip gradient norm and the lr, and whether each digest channel (data, params,
optimizer state) agreed across the repeats. A candidate difference is then EQUIVALENT when it stays
inside the band the baseline shows against itself, and the evidence prints the band beside the
difference. A bitwise-deterministic baseline gets a zero band: every difference stays DIFFERENT.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from parity.checks.base import Finding
from parity.trace import schema
from parity.trace.reader import Trace

#: Scalar channels a band covers: check name -> how to read the value of one step record.
_SCALAR_CHANNELS = ("loss", "grad_norm", "lr_schedule")
#: Digest channels: check name -> the step fields whose agreement across repeats is recorded.
_DIGEST_CHANNELS = {"data": (schema.F_LOADER, schema.F_BATCH), "params": (schema.F_PARAMS,),
                    "optimizer_state": (schema.F_OPTIM_STATE,)}
BANDS_VERSION = 1


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _scalar(step: dict[str, Any], channel: str) -> float | None:
    if channel == "loss":
        losses = step.get(schema.F_LOSSES) or []
        return _float(losses[0].get("value")) if losses else None
    if channel == "grad_norm":
        norm = step.get(schema.F_GRAD_NORM)
        return _float(norm.get("value")) if isinstance(norm, dict) else None
    groups = step.get(schema.F_GROUPS) or []
    return _float(groups[0].get("lr")) if groups and isinstance(groups[0], dict) else None


@dataclass
class Bands:
    """Per-step [min, max] of each scalar channel over K baseline runs, and digest stability."""

    repeats: int
    steps: int
    scalar: dict[str, list[list[float] | None]] = field(default_factory=dict)
    """check name -> per step [min, max] (None where a run did not record the value)."""
    digests_stable: dict[str, bool] = field(default_factory=dict)
    """check name -> True when every repeat recorded the same digests at every step."""

    @property
    def deterministic(self) -> bool:
        zero = all(b is None or b[0] == b[1] for band in self.scalar.values() for b in band)
        return zero and all(self.digests_stable.values())

    def width(self, check: str) -> float:
        """The largest band width of a scalar channel over all steps (0 for a deterministic baseline)."""
        return max((b[1] - b[0] for b in self.scalar.get(check, []) if b is not None), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"version": BANDS_VERSION, **asdict(self), "deterministic": self.deterministic}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Bands":
        return cls(repeats=int(data["repeats"]), steps=int(data["steps"]), scalar=dict(data.get("scalar") or {}),
                   digests_stable={k: bool(v) for k, v in (data.get("digests_stable") or {}).items()})


def compute_bands(runs: list[Trace]) -> Bands:
    """Bands over the common steps of K recordings of one baseline (K >= 2 for a meaningful band)."""
    if not runs:
        raise ValueError("compute_bands needs at least one run")
    n = min(len(t.steps) for t in runs)
    bands = Bands(repeats=len(runs), steps=n)
    for channel in _SCALAR_CHANNELS:
        per_step: list[list[float] | None] = []
        for i in range(n):
            values = [_scalar(t.steps[i], channel) for t in runs]
            finite = [v for v in values if v is not None and math.isfinite(v)]
            per_step.append([min(finite), max(finite)] if finite and len(finite) == len(values) else None)
        bands.scalar[channel] = per_step
    for check, fields in _DIGEST_CHANNELS.items():
        bands.digests_stable[check] = all(len({repr(t.steps[i].get(f)) for t in runs}) == 1
                                          for i in range(n) for f in fields)
    return bands


def _outside(candidate: Trace, bands: Bands, channel: str) -> tuple[int, int, dict[str, Any] | None]:
    """(steps compared, steps outside the band, the first excursion)."""
    compared, outside, first = 0, 0, None
    for i, band in enumerate(bands.scalar.get(channel, [])[:len(candidate.steps)]):
        value = _scalar(candidate.steps[i], channel)
        if band is None or value is None:
            continue
        compared += 1
        if not band[0] <= value <= band[1]:
            outside += 1
            if first is None:
                first = {"step": i, "candidate": value, "band": band}
    return compared, outside, first


def apply_bands(findings: list[Finding], candidate: Trace, bands: Bands) -> dict[str, Any]:
    """Reclassify DIFFERENT findings the baseline's own band explains; return what was applied.

    Scalar channels are EQUIVALENT when every compared candidate value lies inside its step's band.
    Digest channels (data, params, optimizer state) cannot be banded: they are EQUIVALENT only when the
    baseline's own repeats disagree on them too and every scalar channel stayed inside its band.
    """
    by_name = {f.name: f for f in findings}
    inside: dict[str, bool] = {}
    for channel in _SCALAR_CHANNELS:
        compared, outside, first = _outside(candidate, bands, channel)
        inside[channel] = compared > 0 and outside == 0
        f = by_name.get(channel)
        if f is None:
            continue
        f.evidence["band"] = {"repeats": bands.repeats, "max_width": bands.width(channel), "steps_compared": compared,
                              "steps_outside": outside, "first_outside": first}
        if f.status == schema.DIFFERENT and inside[channel] and bands.width(channel) > 0:
            f.status = schema.EQUIVALENT
            f.summary += (f" -- inside the band the baseline shows against itself over {bands.repeats} runs at every "
                          f"compared step (max width {bands.width(channel):.3g})")
    scalars_inside = all(inside[c] or by_name.get(c) is None or by_name[c].status != schema.DIFFERENT
                         for c in _SCALAR_CHANNELS)
    for check, stable in bands.digests_stable.items():
        f = by_name.get(check)
        if f is not None and f.status == schema.DIFFERENT and not stable and scalars_inside:
            f.status = schema.EQUIVALENT
            f.summary += f" -- the baseline's own {bands.repeats} runs disagree on this digest too, and every scalar stayed in its band"
    return {"repeats": bands.repeats, "deterministic": bands.deterministic,
            "widths": {c: bands.width(c) for c in _SCALAR_CHANNELS}, "digests_stable": bands.digests_stable}
