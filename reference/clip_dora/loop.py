"""The epoch loop shared by both trainers: setup, optional resume, train, evaluate, early-stop, checkpoint.

Per epoch the order is fixed: train every batch, evaluate the test split, update
early stopping, save (if this epoch is listed), then stop if early stopping or
`--stop-after-epoch` says so. Saving after evaluation means the RNG state in a
checkpoint is exactly the state the next epoch of a continuous run starts from.
"""

from __future__ import annotations

import math
import os
import random
import time

import numpy as np
import torch

from reference.clip_dora.config import TrainConfig
from reference.clip_dora.data import BehaviourDataset, make_synthetic_split, make_test_loader, make_train_loader
from reference.clip_dora.metrics import LossLog, write_final
from reference.clip_dora.model import build_model, hash_trainable
from reference.clip_dora.state import Checkpointer, EarlyStopping, TrainState, checkpoint_path


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all CUDA devices) global streams."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _configure_determinism(device: str) -> None:
    """Ask for repeatable GPU kernels; CPU kernels used here are already deterministic."""
    if device != "cuda":
        return
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is visible to torch")
    # cuBLAS reads this when its handle is created, so it must be set before the first CUDA op.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def build_state(cfg: TrainConfig) -> tuple[TrainState, BehaviourDataset, torch.utils.data.DataLoader]:
    """Seed, then build data, model, fresh optimizer, scheduler and early stopping, in that order.

    The order matters: model and DoRA init draw on the torch RNG, so a resumed run
    must build them exactly as the original did before its RNG state is restored.
    """
    seed_everything(cfg.seed)
    sizes = cfg.sizes
    train_x, train_y, test_x, test_y = make_synthetic_split(sizes)
    train_set = BehaviourDataset(train_x, train_y, augment=True)
    test_loader = make_test_loader(BehaviourDataset(test_x, test_y, augment=False), sizes.batch_size)
    model = build_model(sizes).to(cfg.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / sizes.batch_size)
    scheduler = None
    if cfg.scheduler == "cosine":
        # Stepped per optimizer step over the whole planned run, so the LR at step s depends on
        # how many steps came before: a fresh scheduler on resume restarts the decay.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps_per_epoch)
    state = TrainState(cfg=cfg, model=model, optimizer=optimizer, scheduler=scheduler,
                       early_stopping=EarlyStopping(cfg.patience), steps_per_epoch=steps_per_epoch)
    return state, train_set, test_loader


def _train_epoch(state: TrainState, train_set: BehaviourDataset, epoch: int, log: LossLog) -> None:
    """One pass over a freshly shuffled training split, one optimizer (and scheduler) step per batch."""
    device = state.cfg.device
    state.model.train()
    for images, targets in make_train_loader(train_set, state.cfg.sizes.batch_size):
        images, targets = images.to(device), targets.to(device)
        loss = torch.nn.functional.mse_loss(state.model(images), targets)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = state.optimizer.param_groups[0]["lr"]
        state.optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        state.global_step += 1
        log.train_step(epoch, state.global_step, loss.item(), lr)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: str) -> float:
    """Mean squared error over the whole test split (sample-weighted, accumulated in float64)."""
    model.eval()
    total, count = 0.0, 0
    for images, targets in loader:
        loss = torch.nn.functional.mse_loss(model(images.to(device)), targets.to(device))
        total += loss.item() * images.shape[0]
        count += images.shape[0]
    return total / count


def run_training(cfg: TrainConfig, checkpointer: Checkpointer) -> dict:
    """Train from scratch or from `cfg.resume` up to `cfg.epochs`; return the final.json summary."""
    started = time.perf_counter()
    _configure_determinism(cfg.device)
    state, train_set, test_loader = build_state(cfg)
    if cfg.resume is not None:
        checkpointer.restore(state, cfg.resume)
    # Both checkpoints imply the step count: batches per epoch are fixed by the preset.
    state.global_step = state.epoch * state.steps_per_epoch
    resumed_from = state.epoch
    cfg.out.mkdir(parents=True, exist_ok=True)
    stop_reason = "epochs"
    with LossLog(cfg.out, checkpointer.name, append=cfg.resume is not None) as log:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            _train_epoch(state, train_set, epoch, log)
            test_loss = evaluate(state.model, test_loader, cfg.device)
            stopper = state.early_stopping
            stopper.update(test_loss)
            log.test(epoch, test_loss, stopper.best_test_loss, stopper.epochs_no_improve)
            state.epoch = epoch
            if cfg.should_save(epoch):
                checkpointer.save(state, checkpoint_path(cfg.out, epoch))
            if stopper.should_stop:
                stop_reason = "early_stopping"
                log.early_stop(epoch, stopper.patience)
                break
            if epoch == cfg.stop_after_epoch:
                stop_reason = "stop_after_epoch"
                break
    summary = {
        "trainer": checkpointer.name,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "resumed_from_epoch": resumed_from if cfg.resume is not None else None,
        "last_epoch": state.epoch,
        "global_step": state.global_step,
        "stop_reason": stop_reason,
        "best_test_loss": state.early_stopping.best_test_loss,
        "epochs_no_improve": state.early_stopping.epochs_no_improve,
        "param_sha256": hash_trainable(state.model),
        "notes": state.notes,
        "wall_s": round(time.perf_counter() - started, 3),
    }
    write_final(cfg.out, summary)
    return summary
