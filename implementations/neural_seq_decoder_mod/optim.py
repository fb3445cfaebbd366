"""Optimizer, learning-rate schedules, AMP and gradient-guard changes of the modified decoder.

Baselines are upstream's: Adam with coupled L2 and LinearLR are taken from the
reference module itself, so the "adam"/"linear" settings cannot drift from it.
"""
from __future__ import annotations

import contextlib
import math

import torch

from reference.neural_seq_decoder.config import ADAM_BETAS, ADAM_EPS
from reference.neural_seq_decoder.trainer import make_optimizer as make_upstream_optimizer
from reference.neural_seq_decoder.trainer import make_scheduler as make_upstream_scheduler


def make_optimizer(args: dict, params):
    """adam: upstream (coupled L2 = l2_decay). adamw: decoupled decay l2_decay, same betas/eps.

    The seed does not say whether AdamW kept eps 0.1; we keep upstream's betas and eps so
    the toggle changes only how weight decay is applied.
    """
    if args["optimizer"] == "adam":
        return make_upstream_optimizer(args, params)
    return torch.optim.AdamW(params, lr=args["lrStart"], betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=args["l2_decay"])


def _warmup_cosine_factor(args: dict):
    # Factor relative to lrStart (the peak): linear from warmup_start_lr to the peak,
    # then half a cosine down to lrEnd over the remaining steps.
    peak, floor, start = args["lrStart"], args["lrEnd"], args["warmup_start_lr"]
    warmup, total = args["warmup_steps"], args["nBatch"]

    def factor(step: int) -> float:
        if step < warmup:
            return (start + (peak - start) * step / warmup) / peak
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return (floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))) / peak

    return factor


def make_schedulers(args: dict, optimizer):
    """Returns (per-step scheduler or None, per-evaluation plateau scheduler or None)."""
    kind = args["lr_schedule"]
    if kind == "linear":
        return make_upstream_scheduler(args, optimizer), None
    if kind == "constant":
        return None, None
    if kind == "warmup_cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine_factor(args)), None
    if kind == "plateau":
        # Stepped with the validation PER at each evaluation (lower is better).
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=args["plateau_factor"],
            patience=args["plateau_patience"],
            min_lr=args["plateau_min_lr"],
        )
        return None, plateau
    raise ValueError(f"--lr-schedule: unknown schedule {kind!r}")


def resolve_amp_dtype(args: dict):
    """None for fp32; auto prefers bf16 (no scaler needed) where the device supports it."""
    setting = args["amp"]
    if setting == "off":
        return None
    if setting == "bf16":
        return torch.bfloat16
    if setting == "fp16":
        return torch.float16
    if str(args["device"]).startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def make_autocast(args: dict, dtype):
    """A zero-argument context factory, or None when AMP is off."""
    if dtype is None:
        return None
    device_type = "cuda" if str(args["device"]).startswith("cuda") else "cpu"
    return lambda: torch.autocast(device_type=device_type, dtype=dtype)


def make_grad_scaler(args: dict, dtype):
    """fp16 needs loss scaling to keep small gradients representable; bf16 does not."""
    if dtype != torch.float16:
        return None
    device_type = "cuda" if str(args["device"]).startswith("cuda") else "cpu"
    return torch.amp.GradScaler(device_type)


def null_context():
    return contextlib.nullcontext()


def total_grad_norm(params) -> torch.Tensor:
    """Global L2 norm over all present gradients (unused inpLayers have none)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))


def guard_gradients(args: dict, params) -> tuple[float | None, bool]:
    """Clip and/or check gradients; returns (pre-clip grad norm or None, skip this update).

    With clipping off and the NaN guard off nothing is computed, so the update is
    bit-for-bit upstream's.
    """
    params = list(params)
    norm = None
    if args["clip_grad"] > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, args["clip_grad"])
    elif args["nan_skip"]:
        norm = total_grad_norm(params)
    if norm is None:
        return None, False
    finite = bool(torch.isfinite(norm))
    return float(norm), bool(args["nan_skip"] and not finite)


def back_off_lr(optimizer, factor: float) -> None:
    """The changelog's adaptive LR: shrink the lr after a non-finite gradient."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
