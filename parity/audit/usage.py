"""Decide from a recorded trace which states the run actually used, and attach a resume check's measured impact.

A state the run used but the checkpoint lacks is "not_saved"; one it never used and the checkpoint
lacks is "not_applicable". Both functions return a new Audit and never modify the one given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from parity.audit.result import (CONTROL_STATES, NOT_APPLICABLE, NOT_SAVED, RNG_CATEGORIES, SAVED, Audit,
                                 CategoryResult)
from parity.exceptions import CheckpointError
from parity.trace import schema
from parity.trace.reader import Run, Trace
from parity.trace.records import step_views

#: torch.optim classes (and common third-party ones) that keep per-parameter state between steps.
STATEFUL_OPTIMIZERS = frozenset({"Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Adagrad", "Adadelta", "RMSprop",
                                 "Rprop", "ASGD", "LBFGS", "SparseAdam", "Adafactor", "Lion", "LAMB", "Lamb",
                                 "AdamW8bit", "Adam8bit", "PagedAdamW", "Muon"})
#: Classes whose state depends on a hyperparameter: stateful when it is non-zero.
_STATEFUL_IF = {"SGD": "momentum"}

_CONTROL_KEYS = ("state", "fired", "first_divergent_step", "loss_rel_at_end", "called")


@dataclass(frozen=True)
class _Usage:
    used: bool | None
    shows: str
    """What the trace shows, completing "trace shows ..."."""


def compare_with_trace(audit: Audit, trace: Trace | Run) -> Audit:
    """Fill `used` for every category the trace can speak for, and re-grade unsaved states.

    Used and not saved: "not_saved", saying so. Not used and not saved: "not_applicable". Saved stays
    "saved" either way. Early stopping and config are invisible in a trace and keep their status.
    """
    if isinstance(trace, Run):
        trace = trace.primary
    if not isinstance(trace, Trace):
        raise CheckpointError(f"compare_with_trace needs a parity Trace, got {type(trace).__name__}")
    usages = {
        "optimizer": _optimizer_usage(trace),
        "scheduler": _scheduler_usage(trace),
        "grad_scaler": _scaler_usage(trace),
        "data_position": _data_usage(trace),
        "counters": _Usage(True, f"{len(trace.steps)} recorded step{'s' if len(trace.steps) != 1 else ''}; "
                                 "a resume always needs to know where it is"),
    }
    for generator, category in RNG_CATEGORIES.items():
        usages[category] = _rng_usage(trace, generator)
    updates = {name: _regrade(audit.get(name), usage) for name, usage in usages.items()}
    data = updates["data_position"]
    if data.status == NOT_SAVED and data.used and updates["counters"].status == SAVED:
        # Trainers that reshuffle per epoch from saved RNG states resume at epoch boundaries without it.
        updates["data_position"] = replace(data, evidence=f"{data.evidence} (the counters are saved: a resume at "
                                                          "an epoch boundary can re-derive the position from them)")
    return audit.with_results(updates, trace=str(trace.path))


def _regrade(result: CategoryResult, usage: _Usage) -> CategoryResult:
    if usage.used is None:
        return replace(result, used=None, details={**result.details, "trace": usage.shows})
    details = {**result.details, "trace": usage.shows}
    empty = bool(result.details.get("empty"))
    if result.status == SAVED and not empty:
        suffix = "used by the run" if usage.used else "not used by the run"
        return replace(result, used=usage.used, details=details, evidence=f"{result.evidence} ({suffix}: trace shows {usage.shows})")
    if usage.used:
        where = f"; {result.evidence}" if empty else ""
        return replace(result, status=NOT_SAVED, used=True, details=details,
                       evidence=f"used by the run (trace shows {usage.shows}) but NOT saved{where}")
    return replace(result, status=NOT_APPLICABLE, used=False, details=details,
                   evidence=f"not used by the run (trace shows {usage.shows}); nothing to save")


def _class_name(described: dict[str, Any]) -> str:
    return str(described.get("class", "?")).rsplit(".", 1)[-1]


def _optimizer_usage(trace: Trace) -> _Usage:
    optimizers = trace.meta.get("optimizers") or []
    if not optimizers:
        return _Usage(False, "no optimizer")
    stateful = [o for o in optimizers if _is_stateful(o)]
    names = ", ".join(_describe_optimizer(o) for o in optimizers)
    if not stateful:
        # Such an optimizer's only state is its param_groups, which the scheduler and config already cover.
        return _Usage(False, f"{names}, which keeps no per-parameter state")
    return _Usage(True, names)


def _is_stateful(described: dict[str, Any]) -> bool:
    name = _class_name(described)
    if name in _STATEFUL_IF:
        defaults = described.get("defaults") or {}
        return bool(defaults.get(_STATEFUL_IF[name]) or 0)
    # An optimizer parity does not know is assumed to keep state: wrongly calling it stateless would hide a gap.
    return True


def _describe_optimizer(described: dict[str, Any]) -> str:
    name = _class_name(described)
    defaults = described.get("defaults") or {}
    shown = [f"{k}={defaults[k]}" for k in ("lr", "momentum", "betas") if k in defaults and defaults[k] is not None]
    return f"{name}({', '.join(shown)})" if shown else name


def _events(trace: Trace) -> set[str]:
    return {event for step in step_views(trace) for event in step.events}


def _scheduler_usage(trace: Trace) -> _Usage:
    schedulers = trace.meta.get("schedulers") or []
    if schedulers:
        return _Usage(True, ", ".join(_class_name(s) for s in schedulers))
    if schema.EV_SCHED_STEP in _events(trace):
        return _Usage(True, f"'{schema.EV_SCHED_STEP}' events")
    return _Usage(False, "no scheduler")


def _scaler_usage(trace: Trace) -> _Usage:
    steps = [s.index for s in step_views(trace) if schema.EV_SCALER_STEP in s.events]
    if steps:
        return _Usage(True, f"'{schema.EV_SCALER_STEP}' in {len(steps)} step{'s' if len(steps) != 1 else ''}")
    return _Usage(False, f"no '{schema.EV_SCALER_STEP}' event in {len(trace.steps)} steps")


def _rng_usage(trace: Trace, generator: str) -> _Usage:
    steps = step_views(trace)
    digests = [(s.index, s.rng[generator]) for s in steps if isinstance(s.rng, dict) and s.rng.get(generator) is not None]
    if generator == "cuda" and not digests and any(isinstance(s.rng, dict) for s in steps):
        return _Usage(False, "CUDA was never initialised")
    if len(digests) < 2:
        return _Usage(None, f"{len(digests)} recorded {generator} RNG digest{'s' if len(digests) != 1 else ''}; "
                            "two are needed to see a change")
    for (_, before), (step, after) in zip(digests, digests[1:]):
        if before != after:
            return _Usage(True, f"the {generator} RNG state changing at step {step}")
    return _Usage(False, f"the {generator} RNG state unchanged over {len(digests)} recorded steps")


def _data_usage(trace: Trace) -> _Usage:
    batches = sum(1 for s in step_views(trace) if s.batch)
    if not batches:
        return _Usage(None, "no recorded batches")
    if len(trace.steps) < 2:
        return _Usage(False, "a single step: a resume never lands mid-data")
    return _Usage(True, f"batches in {batches} of {len(trace.steps)} steps")


def attach_impact(audit: Audit, controls: list[dict[str, Any]]) -> Audit:
    """Set each controlled category's `impact` from a resume check's negative controls.

    A control drops one state on resume; `fired` says whether that changed the resumed run. Several
    controls of one state are joined. Raises CheckpointError for a malformed control.
    """
    texts: dict[str, list[str]] = {}
    for index, control in enumerate(controls):
        _check_control(index, control)
        texts.setdefault(CONTROL_STATES[control["state"]], []).append(_impact_text(control))
    updates = {category: replace(audit.get(category), impact="; ".join(parts)) for category, parts in texts.items()}
    return audit.with_results(updates)


def _check_control(index: int, control: Any) -> None:
    if not isinstance(control, dict):
        raise CheckpointError(f"controls[{index}]: expected a dict, got {type(control).__name__}")
    missing = [k for k in ("state", "fired") if k not in control]
    if missing:
        raise CheckpointError(f"controls[{index}]: missing {', '.join(missing)} (a control has {', '.join(_CONTROL_KEYS)})")
    if control["state"] not in CONTROL_STATES:
        raise CheckpointError(f"controls[{index}]: unknown state {control['state']!r} "
                              f"(expected one of {', '.join(CONTROL_STATES)})")


def _impact_text(control: dict[str, Any]) -> str:
    if not control.get("called", True):
        return "not measured: the resume never restores this state, so dropping it changes nothing"
    if not control["fired"]:
        return "none measured: dropping it left the resumed run identical"
    text = "dropping it changes the resumed run"
    step = control.get("first_divergent_step")
    if step is not None:
        text += f" from step {step}"
    rel = control.get("loss_rel_at_end")
    if rel is not None:
        text += f"; final loss off by {float(rel):.2%}"
    return text
