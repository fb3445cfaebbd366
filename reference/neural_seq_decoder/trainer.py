"""``train_model(args)``: upstream's training loop, step for step (fact sheet 5.1-5.3).

Never does what upstream does not: no clipping, no AMP, no NaN guard, no optimizer
checkpoint. The only additions are the device fallback (in config) and two neutral
observation seams: ``step_hook`` and the optional ``stepLog`` JSON-lines file.
"""
from __future__ import annotations

import json
import os
import pickle
import time

import numpy as np
import torch

from .config import ADAM_BETAS, ADAM_EPS, EVAL_EVERY
from .ctc import ctc_loss, evaluate, make_ctc_loss, upstream_input_lengths
from .data import get_dataset_loaders
from .model import build_model


def seed_everything(seed: int) -> None:
    """Upstream seeds exactly these two; Python's ``random`` is neither seeded nor used."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def save_args(args: dict) -> None:
    with open(os.path.join(args["outputDir"], "args"), "wb") as handle:
        pickle.dump(args, handle)


def make_optimizer(args: dict, params) -> torch.optim.Adam:
    """Adam with coupled L2 (g += wd * theta), betas (0.9, 0.999) and eps 0.1."""
    return torch.optim.Adam(
        params, lr=args["lrStart"], betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=args["l2_decay"]
    )


def make_scheduler(args: dict, optimizer) -> torch.optim.lr_scheduler.LinearLR:
    """LinearLR from lrStart to lrEnd over nBatch steps (constant with the defaults)."""
    return torch.optim.lr_scheduler.LinearLR(
        optimizer,
        start_factor=1.0,
        end_factor=args["lrEnd"] / args["lrStart"],
        total_iters=args["nBatch"],
    )


def augment(features: torch.Tensor, args: dict) -> torch.Tensor:
    """White noise then a per-trial, per-channel constant offset, both over the padding too.

    The draw order (noise first) matters for the RNG stream.
    """
    if args["whiteNoiseSD"] > 0:
        features = features + torch.randn(features.shape, device=features.device) * args["whiteNoiseSD"]
    if args["constantOffsetSD"] > 0:
        offset_shape = [features.shape[0], 1, features.shape[2]]
        features = features + torch.randn(offset_shape, device=features.device) * args["constantOffsetSD"]
    return features


class EvalRecorder:
    """Upstream's checkpoint rule and trainingStats file, shared with the modified trainer.

    Saves ``modelWeights`` only when an earlier evaluation exists and cer is strictly
    below every earlier cer; rewrites ``trainingStats`` after every evaluation.
    """

    def __init__(self, output_dir: str, test_loss=None, test_cer=None):
        self.output_dir = output_dir
        self.test_loss = list(test_loss or [])
        self.test_cer = list(test_cer or [])

    def record(self, model, avg_loss: float, cer: float) -> bool:
        # bool(): np.min makes this a numpy bool, which JSON writers reject.
        improved = bool(len(self.test_cer) > 0 and cer < np.min(self.test_cer))
        if improved:
            torch.save(model.state_dict(), os.path.join(self.output_dir, "modelWeights"))
        self.test_loss.append(avg_loss)
        self.test_cer.append(cer)
        stats = {"testLoss": np.array(self.test_loss), "testCER": np.array(self.test_cer)}
        with open(os.path.join(self.output_dir, "trainingStats"), "wb") as handle:
            pickle.dump(stats, handle)
        return improved


def print_eval(batch: int, avg_loss: float, cer: float, seconds_per_batch: float) -> None:
    print(f"batch {batch}, ctc loss: {avg_loss:>7f}, cer: {cer:>7f}, time/batch: {seconds_per_batch:>7.3f}")


def _open_step_log(args: dict):
    path = args.get("stepLog")
    return open(path, "w", encoding="utf-8") if path else None


def train_model(args: dict, step_hook=None) -> dict:
    """Run upstream's loop. ``step_hook(step, loss, model, optimizer)`` runs after each update.

    Returns {"testLoss": [...], "testCER": [...], "trainLoss": [...]} for in-process callers.
    """
    os.makedirs(args["outputDir"], exist_ok=True)
    seed_everything(args["seed"])
    device = args["device"]
    save_args(args)

    train_loader, test_loader, loaded = get_dataset_loaders(args["datasetPath"], args["batchSize"])
    model = build_model(args, n_days=len(loaded["train"]))
    loss_fn = make_ctc_loss()
    optimizer = make_optimizer(args, model.parameters())
    scheduler = make_scheduler(args, optimizer)
    recorder = EvalRecorder(args["outputDir"])
    train_losses = []
    step_log = _open_step_log(args)
    start_time = time.time()

    try:
        for batch in range(args["nBatch"]):
            model.train()
            # A fresh iterator each step: the batch is the head of a new permutation,
            # and the iterator draws two int64 seeds from the CPU generator.
            features, labels, time_lens, label_lens, days = next(iter(train_loader))
            features, labels = features.to(device), labels.to(device)
            time_lens, label_lens, days = time_lens.to(device), label_lens.to(device), days.to(device)
            features = augment(features, args)

            logits = model.forward(features, days)
            lengths = upstream_input_lengths(time_lens, args["kernelLen"], args["strideLen"])
            loss = ctc_loss(loss_fn, logits, labels, lengths, label_lens)
            loss = torch.sum(loss)  # a no-op on the scalar, kept as upstream has it

            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()

            loss_value = loss.item()
            train_losses.append(loss_value)
            if step_log is not None:
                step_log.write(json.dumps({"step": batch, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}) + "\n")
            if step_hook is not None:
                step_hook(batch, loss, model, optimizer)

            # After the update, so the first evaluation sees exactly one step.
            if batch % EVAL_EVERY == 0:
                avg_loss, cer = evaluate(model, test_loader, loss_fn, args)
                end_time = time.time()
                print_eval(batch, avg_loss, cer, (end_time - start_time) / 100)
                start_time = end_time
                recorder.record(model, avg_loss, cer)
    finally:
        if step_log is not None:
            step_log.close()
    return {"testLoss": recorder.test_loss, "testCER": recorder.test_cer, "trainLoss": train_losses}


def load_model(model_dir: str, n_input_layers: int = 24, device: str = "cpu"):
    """Upstream's loadModel: rebuild from the pickled args with nDays = n_input_layers, load strictly."""
    with open(os.path.join(model_dir, "args"), "rb") as handle:
        args = pickle.load(handle)
    args = dict(args, device=device)
    model = build_model(args, n_days=n_input_layers)
    state = torch.load(os.path.join(model_dir, "modelWeights"), map_location=device)
    model.load_state_dict(state, strict=True)
    return model
