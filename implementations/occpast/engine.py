"""OCCPAST training loop: the reference loop plus DDP, optional AMP, tqdm progress and extra saves.

Per batch the numerics follow the reference exactly (same helpers, same op order:
zero_grad, backward, clip 1.0, optimizer.step, scheduler.step). What differs is
infrastructure: rank guards, DistributedSampler.set_epoch, non_blocking transfers,
tqdm, `--save-each-epoch`, a final save, and AMP when asked for.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time

import torch
from tqdm import tqdm

from reference.histocc.engine import MAX_GRAD_NORM, batch_to_device, evaluate, forward_batch
from reference.histocc.metrics import Averager
from reference.histocc.run_io import LOG_FILE, checkpoint_state, save_checkpoint, update_summary

from .distributed import DistContext, barrier, unwrap_model


def autocast_context(device: torch.device, use_amp: bool):
    """fp16 autocast on CUDA (with a GradScaler), bf16 on CPU; nothing at all when AMP is off."""
    if not use_amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, use_amp: bool):
    """A GradScaler only for fp16 on CUDA; bf16 has fp32's range and needs none."""
    if use_amp and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def _memory_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}GiB"
    # ru_maxrss is in KiB on Linux.
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}GiB rss"


def _save_model_checkpoint(model, optimizer, scheduler, step: int, key: dict, save_dir: str,
                           name: str | None = None) -> None:
    """Same checkpoint format as the reference, with DDP's 'module.' wrapper removed."""
    state = checkpoint_state(unwrap_model(model), optimizer, scheduler, step, key)
    save_checkpoint(save_dir, state, name)


def _backward_and_step(loss, model, optimizer, scheduler, scaler) -> None:
    optimizer.zero_grad()
    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_GRAD_NORM)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        # Clip the true gradients, not the scaled ones.
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()


def _evaluate_and_log(model, loss_fn, val_loader, device, save_dir, scheduler, step, timers, train_loss,
                      nb_blocks, block_size, log_wandb, ctx: DistContext) -> None:
    """Main process evaluates the bare model and logs; the other ranks wait at a barrier."""
    if ctx.is_main_process:
        bare = unwrap_model(model)
        metrics = evaluate(bare, loss_fn, val_loader, device, nb_blocks, block_size)
        row = {"batch_time": timers[0].avg, "batch_time_data": timers[1].avg, "train_loss": train_loss,
               **metrics, "lr": scheduler.get_last_lr()[0]}
        update_summary(step, row, os.path.join(save_dir, LOG_FILE), log_wandb)
        tqdm.write(f"[eval step {step}] " + " | ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    model.train()
    barrier(ctx)


def train_one_epoch(model, loss_fn, data_loader, val_loader, optimizer, scheduler, device, save_dir,
                    current_step: int, key: dict, nb_blocks: int, block_size: int, log_interval: int,
                    eval_interval: int, save_interval: int, ctx: DistContext, epoch: int,
                    scaler=None, use_amp: bool = False, log_wandb: bool = False,
                    max_steps: int | None = None) -> int:
    """One pass over this rank's shard of the training data; returns the global step reached."""
    model.train()
    batch_time, data_time, losses = Averager(), Averager(), Averager()
    progress = tqdm(data_loader, desc=f"epoch {epoch}", disable=not ctx.is_main_process, dynamic_ncols=True)
    end = time.time()
    for batch_idx, batch in enumerate(progress):
        current_step += 1
        data_time.update(time.time() - end)
        input_ids, attention_mask, targets_seq2seq, targets_linear = batch_to_device(batch, device, non_blocking=True)
        with autocast_context(device, use_amp):
            out_seq2seq, out_linear = forward_batch(model, input_ids, attention_mask, targets_seq2seq)
            loss = loss_fn(out_seq2seq, out_linear, targets_seq2seq, targets_linear)
        losses.update(loss.item(), input_ids.size(0))
        _backward_and_step(loss, model, optimizer, scheduler, scaler)
        batch_time.update(time.time() - end)

        if batch_idx % log_interval == 0 or batch_idx == len(data_loader) - 1:
            progress.set_postfix(step=current_step, loss=f"{losses.val:.4f}", avg=f"{losses.avg:.4f}",
                                 lr=f"{scheduler.get_last_lr()[0]:.2e}", mem=_memory_text(device))
        if current_step % save_interval == 0 and ctx.is_main_process:
            _save_model_checkpoint(model, optimizer, scheduler, current_step, key, save_dir)
        if current_step % eval_interval == 0:
            _evaluate_and_log(model, loss_fn, val_loader, device, save_dir, scheduler, current_step,
                              (batch_time, data_time), losses.avg, nb_blocks, block_size, log_wandb, ctx)
        # ADDITION (--max-steps), same placement as in the reference.
        if max_steps is not None and current_step >= max_steps:
            break
        end = time.time()
    progress.close()
    return current_step


def train(model, loss_fn, train_loader, val_loader, optimizer, scheduler, device, save_dir,
          total_steps: int, current_step: int, key: dict, nb_blocks: int, block_size: int,
          log_interval: int, eval_interval: int, save_interval: int, ctx: DistContext,
          train_sampler=None, scaler=None, use_amp: bool = False, save_each_epoch: bool = False,
          log_wandb: bool = False, max_steps: int | None = None) -> int:
    """Whole epochs while step < total_steps, then one final save (main process only)."""
    epoch = current_step // len(train_loader)
    while current_step < total_steps:
        if max_steps is not None and current_step >= max_steps:
            break
        if train_sampler is not None:
            # Without this every epoch would reuse epoch 0's shuffle.
            train_sampler.set_epoch(epoch)
        current_step = train_one_epoch(
            model, loss_fn, train_loader, val_loader, optimizer, scheduler, device, save_dir,
            current_step, key, nb_blocks, block_size, log_interval, eval_interval, save_interval,
            ctx, epoch, scaler, use_amp, log_wandb, max_steps)
        epoch += 1
        if save_each_epoch and ctx.is_main_process:
            _save_model_checkpoint(model, optimizer, scheduler, current_step, key, save_dir,
                                   name=f"epoch_{epoch}.bin")
    if ctx.is_main_process:
        _save_model_checkpoint(model, optimizer, scheduler, current_step, key, save_dir)
        print(f"Training finished at step {current_step}; final checkpoint saved to {save_dir}", flush=True)
    barrier(ctx)
    return current_step
