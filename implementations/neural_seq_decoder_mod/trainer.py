"""``train_model(args)`` of the modified decoder: upstream's loop with every seed-001 change behind a key.

With every key at its upstream value the sequence of operations, and so of random
numbers, is the reference's: the reference's seeding, args file, augmentation, loss,
evaluation pass and checkpoint rule are imported, not re-written. Each change adds
work only when switched on.
"""
from __future__ import annotations

import json
import os
import time

import torch

from reference.neural_seq_decoder.config import EVAL_EVERY
from reference.neural_seq_decoder.ctc import ctc_loss, evaluate, make_ctc_loss
from reference.neural_seq_decoder.trainer import EvalRecorder, augment, print_eval, save_args, seed_everything

from .beam import make_decoder
from .checkpoint import default_checkpoint_path, load_checkpoint, save_checkpoint
from .data import build_loaders, to_device
from .lengths import input_lengths_fn
from .model import build_mod_model
from .optim import (
    back_off_lr,
    guard_gradients,
    make_autocast,
    make_grad_scaler,
    make_optimizer,
    make_schedulers,
    null_context,
    resolve_amp_dtype,
)

#: Window of the moving-average PER the seed logged (it no longer drives checkpoints).
PER_AVG_WINDOW_STEPS = 200


class _Metrics:
    """Appends one JSON object per line to ``outputDir/metrics.jsonl`` (the seed's metrics file)."""

    def __init__(self, output_dir: str, append: bool):
        self.handle = open(os.path.join(output_dir, "metrics.jsonl"), "a" if append else "w", encoding="utf-8")

    def write(self, **record) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _moving_average_per(recorder: EvalRecorder, step_history: list) -> float:
    recent = [cer for step, cer in zip(step_history, recorder.test_cer) if step > step_history[-1] - PER_AVG_WINDOW_STEPS]
    return sum(recent) / len(recent)


def train_model(args: dict, step_hook=None) -> dict:
    """Train; ``step_hook(step, loss, model, optimizer)`` runs after each step. Returns the eval/loss history."""
    os.makedirs(args["outputDir"], exist_ok=True)
    seed_everything(args["seed"])
    device = args["device"]
    if args["cudnn_benchmark"]:
        torch.backends.cudnn.benchmark = True
    save_args(args)

    train_loader, test_loader, loaded = build_loaders(args)
    model = build_mod_model(args, n_days=len(loaded["train"]))
    forward = torch.compile(model, backend=args["compile_backend"]) if args["compile"] else model
    loss_fn = make_ctc_loss()
    params = list(model.parameters())
    optimizer = make_optimizer(args, params)
    scheduler, plateau = make_schedulers(args, optimizer)
    amp_dtype = resolve_amp_dtype(args)
    autocast = make_autocast(args, amp_dtype)
    scaler = make_grad_scaler(args, amp_dtype)
    lengths_fn = input_lengths_fn(args["t_eff"])
    decode_fn = make_decoder(args["decoder"], args["beam_size"])
    recorder = EvalRecorder(args["outputDir"])
    checkpoint_path = default_checkpoint_path(args["outputDir"])

    start_step, skipped = 0, 0
    if args["resume"]:
        restored = load_checkpoint(args["resume"], model=model, optimizer=optimizer, scheduler=scheduler,
                                   plateau=plateau, scaler=scaler, recorder=recorder, device=device)
        start_step, skipped = restored["next_step"], restored["skipped"]
    eval_steps = [s for s in range(0, start_step, EVAL_EVERY)]
    metrics = _Metrics(args["outputDir"], append=bool(args["resume"]))
    train_losses = []
    end_step = args["nBatch"] if args["stop_after"] is None else min(args["nBatch"], args["stop_after"])
    start_time = time.time()

    def _checkpoint(next_step: int) -> None:
        save_checkpoint(checkpoint_path, next_step=next_step, model=model, optimizer=optimizer, scheduler=scheduler,
                        plateau=plateau, scaler=scaler, recorder=recorder, skipped=skipped)

    try:
        for batch in range(start_step, end_step):
            model.train()
            features, labels, time_lens, label_lens, days = to_device(next(iter(train_loader)), device, args["non_blocking"])
            features = augment(features, args)

            with autocast() if autocast else null_context():
                logits = forward(features, days)
            lengths = lengths_fn(time_lens, args["kernelLen"], args["strideLen"])
            # CTC in fp32 whatever the autocast dtype; .float() is a no-op for fp32.
            loss = ctc_loss(loss_fn, logits.float(), labels, lengths, label_lens)

            optimizer.zero_grad()
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.unscale_(optimizer)  # clip and check true gradients, not scaled ones
            grad_norm, skip = guard_gradients(args, params)
            if skip:
                skipped += 1
                optimizer.zero_grad()
                if args["nan_lr_backoff"] != 1.0:
                    back_off_lr(optimizer, args["nan_lr_backoff"])
            elif scaler:
                scaler.step(optimizer)
            else:
                optimizer.step()
            if scaler:
                scaler.update()
            if scheduler is not None:
                scheduler.step()

            loss_value = loss.item()
            train_losses.append(loss_value)
            metrics.write(step=batch, loss=loss_value, lr=optimizer.param_groups[0]["lr"], grad_norm=grad_norm,
                          skipped=skip, skipped_total=skipped)
            if step_hook is not None:
                step_hook(batch, loss, model, optimizer)

            if batch % EVAL_EVERY == 0:
                avg_loss, per = evaluate(model, test_loader, loss_fn, args, input_lengths_fn=lengths_fn,
                                         decode_fn=decode_fn, forward_fn=forward, autocast=autocast)
                now = time.time()
                print_eval(batch, avg_loss, per, (now - start_time) / 100)
                start_time = now
                # Upstream's rule: actual PER, strictly better than every earlier one.
                improved = recorder.record(model, avg_loss, per)
                eval_steps.append(batch)
                if plateau is not None:
                    plateau.step(per)
                metrics.write(step=batch, test_loss=float(avg_loss), per=per, improved=improved,
                              per_moving_avg=_moving_average_per(recorder, eval_steps), decoder=args["decoder"])
                _checkpoint(batch + 1)
        _checkpoint(end_step)
    finally:
        metrics.close()
    return {"testLoss": recorder.test_loss, "testCER": recorder.test_cer, "trainLoss": train_losses, "skipped": skipped}
