"""First-divergence localisation: the earliest step at which a training channel differs, the channel
that diverged first in causal order at that step, and a one-sentence diagnosis from the evidence."""

from __future__ import annotations

from typing import Any

from parity.checks.base import Finding
from parity.trace import schema

#: check name -> channel name used in reports and JSON.
CHECK_CHANNEL = {"data": "data", "loss": "loss", "grad_norm": "grad_norm", "lr_schedule": "lr",
                 "params": "params", "optimizer_state": "optimizer_state"}


def _config_hint(config: Finding | None, *sections: str) -> str:
    if config is None:
        return ""
    paths = [c["path"] for c in config.evidence.get("changes", [])
             if any(c["path"].startswith(f"root['{s}']") for s in sections)]
    if not paths:
        return ""
    return " (config differs in " + ", ".join(p.replace("root", "") for p in paths[:3]) + ")"


def _diagnose(channel: str, step: int, by_name: dict[str, Finding]) -> str:
    order = by_name.get("step_order")
    config = by_name.get("config")
    reordered = order is not None and order.status == schema.DIFFERENT and order.first_divergent_step == step \
        and not order.evidence.get("length_mismatch")
    seq = ""
    if reordered:
        seq = f"; the loop order differs there: {' > '.join(order.evidence['baseline'])} vs {' > '.join(order.evidence['candidate'])}"
    if channel == "data":
        return (f"the batches differ from step {step} ({by_name['data'].summary}): data order, sampler seeding or "
                f"augmentation changed{_config_hint(config, 'argparse')}{seq}.")
    if channel == "loss":
        where = "the initial model or the forward/loss computation" if step == 0 else "the forward pass or loss computation (dropout, reduction, RNG use)"
        return f"same batches{' and parameters' if step else ''}, different loss at step {step}: {where} differs{_config_hint(config, 'argparse')}{seq}."
    if channel == "grad_norm":
        clip = by_name["grad_norm"].evidence.get("clip")
        if clip and clip["step"] == step:
            a, b = (clip.get("baseline") or {}).get("max_norm"), (clip.get("candidate") or {}).get("max_norm")
            return f"same loss and gradients, but the clip threshold differs ({a} -> {b}) from step {step}{seq}."
        return f"same loss, different gradient norm at step {step}: the backward pass or gradient bookkeeping differs (e.g. gradients not zeroed, accumulation){seq}."
    if channel == "lr":
        return f"lr differs at step {step} while data, loss and gradients match: the learning-rate schedule differs{_config_hint(config, 'schedulers', 'argparse')}{seq}."
    if channel == "params":
        return f"same loss, gradients and lr, different parameters after step {step}: the optimizer update differs{_config_hint(config, 'optimizers')}{seq}."
    if channel == "optimizer_state":
        return f"parameters match but optimizer state differs after step {step}: optimizer hyperparameters or state handling differ{_config_hint(config, 'optimizers')}{seq}."
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
