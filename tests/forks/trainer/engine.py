"""One training epoch and one evaluation pass; the optimizer and its warmup + cosine schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=cfg["betas"])


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_steps`, then cosine decay to zero at `total_steps`."""
    warmup = cfg["warmup_steps"]

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on the model's device (a no-op on CPU: the same tensors come back)."""
    return {key: value.to(device) for key, value in batch.items()}


def forward_batch(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["features"])


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, cfg: dict,
                    max_batches: int | None = None) -> tuple[float, int]:
    """Train on at most `max_batches` batches; return the mean loss and how many batches were used."""
    model.train()
    device = next(model.parameters()).device
    total, seen = 0.0, 0
    for batch in loader:
        batch = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        logits = forward_batch(model, batch)
        loss = F.cross_entropy(logits, batch["label"])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        scheduler.step()
        total += loss.item()
        seen += 1
        if max_batches is not None and seen >= max_batches:
            break  # before fetching another batch: that would draw augmentation noise for nothing
    return total / max(1, seen), seen


def evaluate(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Mean loss and accuracy over `loader`; leaves the model back in training mode."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, device)
            logits = forward_batch(model, batch)
            loss_sum += F.cross_entropy(logits, batch["label"], reduction="sum").item()
            correct += (logits.argmax(dim=-1) == batch["label"]).sum().item()
            count += len(batch["label"])
    model.train()
    return {"val_loss": loss_sum / max(1, count), "val_acc": correct / max(1, count)}
