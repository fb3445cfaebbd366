"""First-divergence localisation: the earliest step at which a training channel differs, the channel
that diverged first in causal order at that step, and a one-sentence diagnosis from the evidence.

The diagnosis names only causes consistent with the diverging channel (a data difference is never
blamed on an optimizer flag); where no recorded difference fits, it says so and points at `parity ablate`.
"""

from __future__ import annotations

import re
from typing import Any

from parity.checks.base import Finding
from parity.checks.step_order import events_window
from parity.trace import schema

#: check name -> channel name used in reports and JSON.
CHECK_CHANNEL = {"model": "model", "data": "data", "train_mode": "mode", "loss": "loss", "grad_norm": "grad_norm",
                 "lr_schedule": "lr", "params": "params", "optimizer_state": "optimizer_state"}

#: Names of free-form settings that can change what data a run sees, and how.
_DATA_NAME = re.compile(r"data|batch|shuffl|seed|worker|sampl|split|aug|noise|mask|crop|flip|jitter|mixup|cutmix|"
                        r"transform|vocab|label|class|token|drop_last|max_len|seq_len|context|window|stride|filter|"
                        r"fraction|subset|limit|order", re.IGNORECASE)

_ARGS, _OBJECTS, _NUMERICS = schema.META_ARGPARSE, schema.META_CONFIG_OBJECTS, schema.RUN_NUMERICS
#: Config sections (run_config keys: the meta and header keys the settings come from) whose changes are
#: consistent with a divergence first seen in each channel.
#: Names of free-form settings that can change the learning rate a step uses.
_LR_NAME = re.compile(r"lr|learning|rate|warmup|schedul|decay|gamma|milestone|cosine|cycle|anneal|step|epoch|"
                      r"optim|batch", re.IGNORECASE)

_CONSISTENT = {"data": (schema.META_DATALOADERS, _OBJECTS, _ARGS),
               "loss": (_OBJECTS, _ARGS, _NUMERICS, schema.META_NUMERICS_AT_END, schema.RUN_ENV),
               "grad_norm": (_OBJECTS, _ARGS, _NUMERICS),
               "lr": (schema.META_SCHEDULERS, schema.META_OPTIMIZERS, _OBJECTS, _ARGS),
               "params": (schema.META_OPTIMIZERS, _OBJECTS, _ARGS, _NUMERICS),
               "optimizer_state": (schema.META_OPTIMIZERS, _OBJECTS, _ARGS)}
#: Settings about saving, logging and evaluating: whatever else their names hold ("save_each_epoch"),
#: they cannot move the data or the learning rate of an update.
_BOOKKEEPING = re.compile(r"(save|log|eval|print|checkpoint|ckpt|val_|test_|report|wandb|tensorboard)", re.IGNORECASE)
#: Channels where a free-form setting (argparse, config dict) is a candidate only when its name fits.
_FREE_FORM_NAMES = {"data": _DATA_NAME, "lr": _LR_NAME}
_UNATTRIBUTED = "no recorded setting explains it (unattributed: `parity ablate` measures candidate changes one at a time)"


def consistent_changes(changes: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    """The setting changes that could explain a divergence first seen in `channel`. For data and lr, a
    free-form setting (argparse, config dict) counts only when its name is about data or the schedule: an
    `--eval-every` flag cannot reorder batches, `--use-amp` cannot move a learning rate, and naming them
    would blame a setting the evidence does not implicate."""
    out = []
    for change in changes:
        path = change["path"]
        section = next((s for s in _CONSISTENT.get(channel, ()) if path.startswith(f"root['{s}']")), None)
        if section is None:
            continue
        name = path.rpartition("[")[2].strip("'[]")
        if section in (_OBJECTS, _ARGS) and channel in _FREE_FORM_NAMES \
                and (not _FREE_FORM_NAMES[channel].search(name) or _BOOKKEEPING.match(name)):
            continue
        out.append(change)
    return out


def _config_hint(config: Finding | None, channel: str) -> str:
    if config is None:
        return ""
    paths = [c["path"] for c in consistent_changes(config.evidence.get("changes", []), channel)]
    if not paths:
        return ""
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return " (settings that differ and could explain it: " + ", ".join(p.replace("root", "") for p in paths[:3]) + more + ")"


def _diagnose(channel: str, step: int, by_name: dict[str, Finding]) -> str:
    order = by_name.get("step_order")
    config = by_name.get("config")
    reordered = order is not None and order.status == schema.DIFFERENT and order.first_divergent_step == step \
        and not order.evidence.get("length_mismatch")
    seq = ""
    if reordered:
        a, b = events_window(order.evidence["baseline"], order.evidence["candidate"])
        seq = f"; the loop order differs there: {a} vs {b}"
    hint = _config_hint(config, channel)
    if channel == "model":
        return f"the model itself differs: {by_name['model'].summary}."
    if channel == "data":
        data = by_name["data"]
        how = data.evidence.get("how")
        model = by_name.get("model")
        after = ""
        if model is not None and model.status == schema.DIFFERENT:
            after = " (the model differs too: see the model check)"
        if how:
            return f"the data differs from step {step}: {how}{hint}{after}{seq}."
        return f"the batches differ from step {step} ({data.summary}){hint}{after}{seq}."
    if channel == "mode":
        return f"{by_name['train_mode'].summary}: dropout/batch-norm run in eval mode during training from step {step}{seq}."
    if channel == "loss":
        where = "the initial model or the forward/loss computation" if step == 0 else "the forward pass or loss computation (dropout, reduction, RNG use)"
        return f"same batches{' and parameters' if step else ''}, different loss at step {step}: {where} differs{hint or ('; ' + _UNATTRIBUTED if not seq else '')}{seq}."
    if channel == "grad_norm":
        clip = by_name["grad_norm"].evidence.get("clip")
        if clip and clip["step"] == step:
            a, b = (clip.get("baseline") or {}).get("max_norm"), (clip.get("candidate") or {}).get("max_norm")
            return f"same loss and gradients, but the clip threshold differs ({a} -> {b}) from step {step}{seq}."
        return f"same loss, different gradient norm at step {step}: the backward pass or gradient bookkeeping differs (e.g. gradients not zeroed, accumulation){hint}{seq}."
    if channel == "lr":
        return f"lr differs at step {step} while data, loss and gradients match: the learning-rate schedule differs{hint}{seq}."
    if channel == "params":
        # The trace holds the gradients' norm, not each gradient: gradients that differ by less than the
        # norm's rounding look "the same" here (a nondeterministic backward kernel does exactly that).
        return (f"same loss, gradient norm and lr, different parameters after step {step}: the optimizer update "
                f"differs, or gradients differ below the norm's rounding (`parity locate` tells which){hint}{seq}.")
    if channel == "optimizer_state":
        return f"parameters match but optimizer state differs after step {step}: optimizer hyperparameters or state handling differ{hint}{seq}."
    if channel == "steps":
        return f"the runs have different lengths: {order.summary if order else ''}."
    return f"{channel} differs at step {step}{seq}."


def locate_first_divergence(findings: list[Finding]) -> dict[str, Any] | None:
    """Earliest step with a DIFFERENT training channel; ties broken by causal order (schema.CHANNELS)."""
    by_name = {f.name: f for f in findings}
    candidates = []
    for f in findings:
        channel = CHECK_CHANNEL.get(f.name)
        if channel and f.status == schema.DIFFERENT and f.first_divergent_step is not None:
            candidates.append((f.first_divergent_step, schema.CHANNELS.index(channel), channel))
    order = by_name.get("step_order")
    if not candidates:
        if order is not None and order.evidence.get("length_mismatch"):
            step = order.first_divergent_step
            return {"step": step, "channel": "steps", "diagnosis": _diagnose("steps", step, by_name)}
        return None
    step, _, channel = min(candidates)
    return {"step": step, "channel": channel, "diagnosis": _diagnose(channel, step, by_name)}
