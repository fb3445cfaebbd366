"""`train_mode`: whether the model was in training mode at each step's grad-enabled forward.

A `model.eval()` left on during training turns dropout off and makes batch-norm use running
statistics; an eval pass that restores `train()` before the next forward with grad is inert. The
loop order alone cannot tell the two apart; the mode at the forward that trains can.
"""

from __future__ import annotations

from typing import Any

from parity.checks.base import Finding, not_compared
from parity.trace import schema
from parity.trace.reader import Trace


def _mode(step: dict[str, Any]) -> tuple | None:
    mode = step.get(schema.F_MODE)
    if not isinstance(mode, dict):
        return None
    return bool(mode.get("training")), int(mode.get("n_eval") or 0)


def _describe(mode: dict[str, Any] | None) -> str:
    if not mode:
        return "not recorded"
    if mode.get("training") and not mode.get("n_eval"):
        return "training mode"
    names = ", ".join((mode.get("eval_modules") or [])[:4])
    if not mode.get("training"):
        return f"eval mode ({mode.get('n_eval', 0)} modules in eval{': ' + names if names else ''})"
    return f"training mode with {mode.get('n_eval')} submodules in eval ({names})"


def check_train_mode(baseline: Trace, candidate: Trace) -> Finding:
    """DIFFERENT when, at some step, the modules that trained were in another mode on one side (dropout
    or batch-norm in eval mode during training). Whether that changed an update is for the loss and
    gradient channels to say; compare() downgrades it when every one of them is identical."""
    compared = 0
    for i, (a, b) in enumerate(zip(baseline.steps, candidate.steps)):
        ma, mb = _mode(a), _mode(b)
        if ma is None or mb is None:
            continue
        compared += 1
        if ma != mb:
            evidence = {"step": i, "baseline": a.get(schema.F_MODE), "candidate": b.get(schema.F_MODE)}
            return Finding("train_mode", schema.DIFFERENT,
                           f"at the training forward of step {i} the model is in {_describe(a.get(schema.F_MODE))} in "
                           f"the baseline, {_describe(b.get(schema.F_MODE))} in the candidate (dropout/batch-norm "
                           "behave differently)", i, evidence)
    if not compared:
        return not_compared("train_mode", "no training-mode record on both sides (trace older than schema v2)")
    return Finding("train_mode", schema.IDENTICAL, f"same training mode at the training forward of all {compared} "
                   "compared steps", None, {"steps_compared": compared})
