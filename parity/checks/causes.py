"""Ranked causes: what changed between two runs, ordered by how directly it changes training.

A cause is an explanation backed by evidence from a check (model structure, data, labels, settings,
code). Causes are ranked by category; a cause that is the consequence of another (a bigger model
draws more random numbers at initialisation, so every random augmentation after it differs) names
its root in `consequence_of` and is listed after it, never as a cause of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from parity.trace import schema

#: Categories in rank order: what changes training most directly comes first.
CATEGORIES = (
    "model",          # module tree, parameter shapes/dtypes, frozen/unfrozen parameters
    "labels",         # same inputs, different targets (e.g. a re-encoded label vocabulary)
    "data_content",   # different samples (data prepared differently, a different split)
    "data_order",     # the same samples per epoch, in another order
    "augmentation",   # the same raw samples, different batches or model inputs (transforms, noise)
    "optimizer",      # optimizer class or hyperparameters
    "schedule",       # learning-rate schedule
    "clipping",       # gradient-clipping threshold
    "numerics",       # numerics flags, precision, deterministic algorithms
    "mode",           # dropout/batch-norm in eval mode during training
    "loop",           # loop order (zero_grad, accumulation, backward)
    "config",         # a setting that differs and may matter (training differs, not yet attributed)
    "code",           # source files/functions that changed
    "inert",          # settings that differ but cannot change training here (paths, output dirs)
    "unattributed",   # training differs and no recorded difference explains it
)


@dataclass
class Cause:
    """One ranked explanation of a difference, with the evidence that supports it."""

    category: str
    summary: str
    step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    consequence_of: str | None = None
    """The category of the root cause this one follows from (it is then not a cause of its own)."""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown cause category {self.category!r}")

    @property
    def rank(self) -> int:
        return CATEGORIES.index(self.category) + (len(CATEGORIES) if self.consequence_of else 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- building the ranked list ---------------------------------------------------------------------
#: Config sections (run_config keys) and the category a change there belongs to.
_SECTION_CATEGORY = {schema.META_OPTIMIZERS: "optimizer", schema.META_SCHEDULERS: "schedule",
                     schema.RUN_NUMERICS: "numerics", schema.META_NUMERICS_AT_END: "numerics",
                     schema.RUN_ENV: "numerics"}
_SHOWN = 4


def _section(path: str) -> str:
    return path[len("root['"):].split("'", 1)[0] if path.startswith("root['") else path


def _setting(change: dict[str, Any]) -> str:
    name = change["path"].replace("root", "")
    return f"`{name}` {change.get('baseline', '(absent)')!r} -> {change.get('candidate', '(absent)')!r}"


def _listing(changes: list[dict[str, Any]]) -> str:
    more = f" and {len(changes) - _SHOWN} more" if len(changes) > _SHOWN else ""
    return "; ".join(_setting(c) for c in changes[:_SHOWN]) + more


def _code_line(code: Any) -> str:
    if code is None or not getattr(code, "changed", False):
        return ""
    return "; ".join(f.describe() for f in code.files[:_SHOWN])


def rank_causes(findings: dict[str, Any], verdict: str, first_divergence: dict[str, Any] | None,
                code: Any = None) -> list[Cause]:
    """The causes the evidence supports, ranked; `findings` maps check name to Finding."""
    from parity.checks.divergence import consistent_changes

    def differs(name: str) -> bool:
        f = findings.get(name)
        return f is not None and f.status == schema.DIFFERENT

    training_differs = verdict == schema.DIFFERENT
    config = findings.get("config")
    changes = list(config.evidence.get("changes", [])) if config is not None else []
    paths = list(config.evidence.get("paths", [])) if config is not None else []
    causes: list[Cause] = []
    model_differs = differs("model")
    if model_differs:
        f = findings["model"]
        causes.append(Cause("model", f.summary, 0, {"changes": f.evidence.get("changes", [])[:12],
                                                     "parameters": f.evidence.get("parameters")}))
    if differs("data"):
        f = findings["data"]
        kind = f.evidence.get("kind", "data_content")
        data_settings = consistent_changes(changes, "data")
        evidence = {k: f.evidence[k] for k in ("kind", "how", "fields_differing", "target_field", "label_histogram",
                                               "datasets", "epochs_compared", "epochs_with_same_samples",
                                               "rng_at_first_batch") if k in f.evidence}
        summary = f.summary
        consequence = None
        if model_differs and kind not in ("labels", "data_content") \
                and str(f.evidence.get("rng_at_first_batch", "")).startswith("differs"):
            consequence = "model"
            summary += ("; the random-number state before the first batch already differs: the changed model drew "
                        "a different amount of random numbers at initialisation, so every random draw after it differs")
        elif data_settings:
            evidence["settings_that_differ"] = [_setting(c) for c in data_settings]
            summary += f"; settings that differ and could explain it: {_listing(data_settings)}"
        causes.append(Cause(kind, summary, f.first_divergent_step, evidence, consequence))
    grad = findings.get("grad_norm")
    clip = grad.evidence.get("clip") if grad is not None else None
    if clip:
        a, b = (clip.get("baseline") or {}).get("max_norm"), (clip.get("candidate") or {}).get("max_norm")
        causes.append(Cause("clipping", f"the gradient-clipping threshold differs ({a} -> {b}) from step {clip.get('step')}",
                            clip.get("step"), {"clip": clip}))
    by_category: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        by_category.setdefault(_SECTION_CATEGORY.get(_section(change["path"]), "config"), []).append(change)
    lr_differs, update_differs = differs("lr_schedule"), differs("params") or differs("optimizer_state")
    for category in ("optimizer", "schedule", "numerics", "config"):
        group = by_category.get(category, [])
        if not group:
            continue
        if not training_differs:
            causes.append(Cause("inert", f"{category} settings differ but every training channel is identical, so they "
                                         f"did not change training here: {_listing(group)}", None, {"changes": group}))
            continue
        step = (first_divergence or {}).get("step")
        causes.append(Cause(category, f"{category} settings differ: {_listing(group)}", step, {"changes": group}))
    if training_differs and lr_differs and not by_category.get("optimizer") and not by_category.get("schedule"):
        f = findings["lr_schedule"]
        causes.append(Cause("schedule", f"the learning rate actually used differs: {f.summary}", f.first_divergent_step,
                            {"lr": {k: v for k, v in f.evidence.items() if k != "strength"}}))
    if differs("train_mode"):
        f = findings["train_mode"]
        causes.append(Cause("mode", f.summary, f.first_divergent_step, f.evidence))
    order = findings.get("step_order")
    if order is not None and order.status == schema.DIFFERENT and not order.evidence.get("length_mismatch"):
        causes.append(Cause("loop", order.summary, order.first_divergent_step,
                            {k: order.evidence.get(k) for k in ("step", "baseline", "candidate")}))
    if paths:
        causes.append(Cause("inert", f"{len(paths)} path setting(s) differ (output/checkpoint/log locations), as they do "
                                     f"between any two runs: {_listing(paths)}", None, {"changes": paths}))
    code_line = _code_line(code)
    if code_line:
        causes.append(Cause("code", f"source changes: {code_line}", None, {"files": code.to_json()["files"]}))
    if update_differs and training_differs and not lr_differs and not differs("loss") and not differs("grad_norm") \
            and not by_category.get("optimizer") and not any(c.category == "optimizer" for c in causes):
        causes.append(Cause("optimizer", "same loss, gradients and learning rate, different parameters after the update: "
                                         "the optimizer's update rule or its hidden settings differ", None, {}))
    explained = {"model", "labels", "data_content", "data_order", "augmentation", "optimizer", "schedule", "clipping",
                 "numerics", "mode", "loop", "config"}
    if training_differs and not any(c.category in explained for c in causes):
        fd = first_divergence or {}
        where = f" from step {fd.get('step')} in `{fd.get('channel')}`" if fd else ""
        hint = "changed code is listed below; " if code_line else ""
        causes.append(Cause("unattributed", f"training differs{where} and no recorded setting, model or data change "
                            f"explains it; {hint}`parity ablate` measures candidate changes one at a time",
                            fd.get("step"), {}))
    return sorted(causes, key=lambda c: c.rank)
