"""Training and evaluation loops of the finetune path (upstream `seq2seq_mixer_engine` role).

Per batch, in upstream's order: step += 1, move tensors, build decoder input and masks,
forward, loss, record loss.item(), zero_grad, backward, clip (1.0), optimizer.step,
scheduler.step, print, save on save_interval, evaluate + log on eval_interval.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from .formatter import PAD_IDX
from .metrics import Averager, flat_accuracy, order_invariant_accuracy
from .model import create_mask
from .run_io import LOG_FILE, checkpoint_state, save_checkpoint, update_summary

MAX_GRAD_NORM = 1.0


def batch_to_device(batch: dict, device, non_blocking: bool = False) -> tuple[torch.Tensor, ...]:
    """The four tensors of a batch, on device: input_ids, attention_mask, seq2seq and flat targets."""
    return tuple(batch[k].to(device, non_blocking=non_blocking)
                 for k in ("input_ids", "attention_mask", "targets_seq2seq", "targets_linear"))


def forward_batch(model: nn.Module, input_ids, attention_mask, targets_seq2seq):
    """Teacher-forced forward: the decoder sees BOS plus the L target tokens (final EOS dropped)."""
    target_input = targets_seq2seq[:, :-1]
    target_mask, target_padding_mask = create_mask(target_input, PAD_IDX, input_ids.device)
    return model(input_ids, attention_mask, target_input, target_mask, target_padding_mask)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, data_loader, device, nb_blocks: int,
             block_size: int) -> dict:
    """Full validation pass with teacher forcing; metrics averaged over batches, weighted by size."""
    model.eval()
    names = ["val_loss", "val_loss_linear", "val_loss_seq2seq", "seq_acc", "token_acc", "flat_acc"]
    meters = {name: Averager() for name in names}
    for batch in data_loader:
        input_ids, attention_mask, targets_seq2seq, targets_linear = batch_to_device(batch, device)
        out_seq2seq, out_linear = forward_batch(model, input_ids, attention_mask, targets_seq2seq)
        seq_acc, token_acc = order_invariant_accuracy(
            out_seq2seq.argmax(dim=2), targets_seq2seq[:, 1:], nb_blocks, block_size)
        values = {
            "val_loss": loss_fn(out_seq2seq, out_linear, targets_seq2seq, targets_linear).item(),
            "val_loss_linear": loss_fn.loss_fn_linear(out_linear, targets_linear).item(),
            "val_loss_seq2seq": loss_fn.loss_fn_seq2seq(out_seq2seq, targets_seq2seq).item(),
            "seq_acc": seq_acc,
            "token_acc": token_acc,
            "flat_acc": flat_accuracy(out_linear, targets_linear),
        }
        for name, value in values.items():
            meters[name].update(value, input_ids.size(0))
    return {name: meter.avg for name, meter in meters.items()}


def _eval_and_log(model, loss_fn, val_loader, device, save_dir, scheduler, step, timers, train_loss,
                  nb_blocks, block_size, log_wandb) -> dict:
    """Evaluate, put the model back in train mode and append the logs.csv row."""
    eval_metrics = evaluate(model, loss_fn, val_loader, device, nb_blocks, block_size)
    model.train()
    row = {"batch_time": timers[0].avg, "batch_time_data": timers[1].avg, "train_loss": train_loss,
           **eval_metrics, "lr": scheduler.get_last_lr()[0]}
    update_summary(step, row, os.path.join(save_dir, LOG_FILE), log_wandb)
    return eval_metrics


def train_one_epoch(model, loss_fn, data_loader, val_loader, optimizer, scheduler, device, save_dir,
                    current_step: int, key: dict, nb_blocks: int, block_size: int, log_interval: int,
                    eval_interval: int, save_interval: int, log_wandb: bool = False,
                    max_steps: int | None = None) -> int:
    """One full pass over the training loader; returns the global step reached."""
    model.train()
    batch_time, data_time, losses = Averager(), Averager(), Averager()
    last_idx = len(data_loader) - 1
    end = time.time()
    for batch_idx, batch in enumerate(data_loader):
        current_step += 1
        data_time.update(time.time() - end)
        input_ids, attention_mask, targets_seq2seq, targets_linear = batch_to_device(batch, device)
        out_seq2seq, out_linear = forward_batch(model, input_ids, attention_mask, targets_seq2seq)
        loss = loss_fn(out_seq2seq, out_linear, targets_seq2seq, targets_linear)
        losses.update(loss.item(), input_ids.size(0))

        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        batch_time.update(time.time() - end)

        if batch_idx % log_interval == 0 or batch_idx == last_idx:
            print(f"Batch {batch_idx + 1}/{last_idx + 1}, step {current_step}: loss {losses.val:.6f} "
                  f"(avg {losses.avg:.6f}), lr {scheduler.get_last_lr()[0]:.3e}, "
                  f"batch time {batch_time.avg:.3f}s (data {data_time.avg:.3f}s)", flush=True)
        if current_step % save_interval == 0:
            save_checkpoint(save_dir, checkpoint_state(model, optimizer, scheduler, current_step, key))
        if current_step % eval_interval == 0:
            eval_metrics = _eval_and_log(model, loss_fn, val_loader, device, save_dir, scheduler,
                                         current_step, (batch_time, data_time), losses.avg,
                                         nb_blocks, block_size, log_wandb)
            print(f"Eval at step {current_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in eval_metrics.items()),
                  flush=True)
        # ADDITION (--max-steps): upstream only stops at epoch ends.
        if max_steps is not None and current_step >= max_steps:
            break
        end = time.time()
    return current_step


def train(model, loss_fn, train_loader, val_loader, optimizer, scheduler, device, save_dir,
          total_steps: int, current_step: int, key: dict, nb_blocks: int, block_size: int,
          log_interval: int, eval_interval: int, save_interval: int, log_wandb: bool = False,
          max_steps: int | None = None) -> int:
    """Run whole epochs while step < total_steps; no save or eval at the end (as upstream)."""
    while current_step < total_steps:
        if max_steps is not None and current_step >= max_steps:
            break
        current_step = train_one_epoch(
            model, loss_fn, train_loader, val_loader, optimizer, scheduler, device, save_dir,
            current_step, key, nb_blocks, block_size, log_interval, eval_interval, save_interval,
            log_wandb, max_steps)
    return current_step
