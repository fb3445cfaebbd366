"""`train_mode`: whether the model was in training mode at each step's grad-enabled forward.

A `model.eval()` left on during training turns dropout off and makes batch-norm use running
statistics; an eval pass that restores `train()` before the next forward with grad is inert. The
loop order alone cannot tell the two apart; the mode at the forward that trains can.
"""

from __future__ import annotations

from typing import Any

from parity.checks.base import Finding, not_compared
from parity.trace import columns as col
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import TrainingMode
from parity.trace.schema import F_MODE, MODE_N_EVAL, MODE_TRAINING


def _mode(step: dict[str, Any]) -> tuple | None:
    # Called for every step of both traces: reads the dict, no TrainingMode per step.
    mode = step.get(F_MODE)
    if not isinstance(mode, dict):
        return None
    return bool(mode.get(MODE_TRAINING)), int(mode.get(MODE_N_EVAL) or 0)


def _describe(record: dict[str, Any] | None) -> str:
    mode = TrainingMode.from_record(record)
    if mode is None:
        return "not recorded"
    if mode.training and not mode.n_eval:
        return "training mode"
    names = ", ".join(mode.eval_modules[:4])
    if not mode.training:
        return f"eval mode ({mode.n_eval} modules in eval{': ' + names if names else ''})"
    return f"training mode with {mode.n_eval} submodules in eval ({names})"


def _first_difference(baseline: Trace, candidate: Trace) -> tuple[int | None, int]:
    """(first step recorded on both sides whose mode differs, steps compared up to it)."""
    pair = col.regular_pair(baseline, candidate, col.MODE)
    if pair is not None:
        ca, cb = pair
        n = min(ca.n, cb.n)
        both = (ca.md_state[:n] == col.PRESENT) & (cb.md_state[:n] == col.PRESENT)
        return col.first_difference(both, (ca.md_train[:n] != cb.md_train[:n]) | (ca.md_neval[:n] != cb.md_neval[:n]))
    compared = 0
    for i, (a, b) in enumerate(zip(baseline.steps, candidate.steps)):
        ma, mb = _mode(a), _mode(b)
        if ma is None or mb is None:
            continue
        compared += 1
        if ma != mb:
            return i, compared
    return None, compared


def check_train_mode(baseline: Trace, candidate: Trace) -> Finding:
    """DIFFERENT when, at some step, the modules that trained were in another mode on one side (dropout
    or batch-norm in eval mode during training). Whether that changed an update is for the loss and
    gradient channels to say; compare() downgrades it when every one of them is identical."""
    first, compared = _first_difference(baseline, candidate)
    if first is not None:
        a, b = baseline.steps[first], candidate.steps[first]
        evidence = {"step": first, "baseline": a.get(F_MODE), "candidate": b.get(F_MODE)}
        return Finding("train_mode", schema.DIFFERENT,
                       f"at the training forward of step {first} the model is in {_describe(a.get(F_MODE))} in "
                       f"the baseline, {_describe(b.get(F_MODE))} in the candidate (dropout/batch-norm "
                       "behave differently)", first, evidence)
    if not compared:
        return not_compared("train_mode", "no training-mode record on both sides (trace older than schema v2)")
    return Finding("train_mode", schema.IDENTICAL, f"same training mode at the training forward of all {compared} "
                   "compared steps", None, {"steps_compared": compared})
