"""What changed between an old golden and the new one, as short markdown to paste into a pull request."""

from __future__ import annotations

import math
from typing import Any

from parity.checks.base import as_float
from parity.checks.compare import compare_traces
from parity.trace import schema
from parity.trace.reader import Trace


def _final_loss(trace: Trace) -> tuple[int, float] | None:
    """(step, value) of the last step that recorded a loss, or None."""
    for step in reversed(trace.steps):
        losses = step.get(schema.F_LOSSES)
        if losses:
            return step[schema.F_STEP], as_float(losses[-1][schema.S_VALUE])
    return None


def _final_params(trace: Trace) -> str | None:
    """The parameters digest of the last step that recorded one (levels other than full skip steps)."""
    return next((s[schema.F_PARAMS] for s in reversed(trace.steps) if s.get(schema.F_PARAMS)), None)


def _relative_change(old: float, new: float) -> str:
    if old == new or (math.isnan(old) and math.isnan(new)):
        return "0 (identical)"
    if old == 0 or not math.isfinite(old) or not math.isfinite(new):
        return "n/a"
    return f"{(new - old) / abs(old):+.3g}"


def golden_change_summary(old: Trace, new: Trace) -> str:
    """Markdown: per channel that changed, its status and first differing step; the first divergence; the
    relative change of the final loss; whether the final parameters digest changed. Never reads files."""
    comparison = compare_traces(old, new)
    lines = [f"### Golden update: {comparison.verdict} against the previous golden", ""]
    changed = [f for f in comparison.findings if f.status in (schema.DIFFERENT, schema.EQUIVALENT)]
    if changed:
        lines += ["| check | status | first differing step |", "| --- | --- | --- |"]
        lines += [f"| {f.name} | {f.status} | {'-' if f.first_divergent_step is None else f.first_divergent_step} |"
                  for f in changed]
    else:
        lines.append("Every compared check is bit-identical to the previous golden.")
    lines.append("")
    not_compared = [f.name for f in comparison.findings if f.status == schema.NOT_COMPARED]
    if not_compared:
        lines.append(f"- Not compared (not recorded on both sides): {', '.join(not_compared)}")
    divergence: dict[str, Any] | None = comparison.first_divergence
    if divergence is not None:
        lines.append(f"- First divergence: step {divergence['step']}, channel `{divergence['channel']}`")
    old_loss, new_loss = _final_loss(old), _final_loss(new)
    if old_loss and new_loss:
        lines.append(f"- Final loss: {old_loss[1]:.6g} (step {old_loss[0]}) -> {new_loss[1]:.6g} (step {new_loss[0]}), "
                     f"relative change {_relative_change(old_loss[1], new_loss[1])}")
    else:
        lines.append("- Final loss: not recorded on " + ("either side" if not old_loss and not new_loss
                                                           else "the previous golden" if not old_loss else "the new one"))
    old_params, new_params = _final_params(old), _final_params(new)
    if old_params is None or new_params is None:
        lines.append("- Final parameters digest: not recorded (capture level without digests)")
    else:
        lines.append("- Final parameters digest: " + ("unchanged" if old_params == new_params
                                                      else f"changed (`{old_params}` -> `{new_params}`)"))
    lines.append(f"- Steps: {len(old.steps)} -> {len(new.steps)}")
    return "\n".join(lines) + "\n"
