"""Entry point of the reference finetune trainer: `python -m reference.histocc.finetune ...`.

Set-up order follows upstream finetune.py (data, datasets, loaders, model, AdamW,
schedule, loss, load_states, args.yaml, train) because it fixes the RNG draw order.
"""

from __future__ import annotations

import functools
import os
import random
import sys

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from .cli import parse_reference_args
from .data_prep import TRAIN_FILE, VAL_FILE, prepare_data
from .dataset import build_datasets, build_loaders
from .engine import train
from .formatter import PAD_IDX, construct_general_purpose_formatter
from .losses import build_loss
from .model import build_model
from .run_io import load_states, wandb_init, write_args_yaml


def seed_everything(seed: int) -> None:
    """ADDITION: seed Python, NumPy and torch (upstream seeds nothing).

    Loaders use 0 workers, so the main-process seeds cover augmentation and shuffling.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    """Upstream picks cuda when available; --device (addition) overrides."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def prepare_inputs(args):
    """Formatter, prepared data on disk, code key and the two datasets."""
    formatter = construct_general_purpose_formatter(args.block_size, args.target_cols, args.use_within_block_sep)
    key = prepare_data(args.dataset, args.input_col, formatter, args.save_path, args.share_val,
                       args.language, args.language_col, args.drop_bad_labels,
                       args.allow_codes_shorter_than_block_size)
    files = (os.path.join(args.save_path, TRAIN_FILE), os.path.join(args.save_path, VAL_FILE))
    datasets = build_datasets(files, formatter, key, formatter.target_cols,
                              sort_word_list=args.seed is not None)
    return formatter, key, datasets


def build_model_and_optimizer(args, formatter, key, device):
    """Model on device and AdamW with torch defaults (weight decay 0.01 on every parameter)."""
    model = build_model(formatter.num_classes, len(key), args.model_preset, args.encoder_path).to(device)
    if args.freeze_encoder:
        for param in model.encoder.parameters():
            param.requires_grad = False
        params = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    else:
        params = model.parameters()
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    return model, optimizer


def _linear_warmup_lambda(step: int, num_warmup_steps: int, num_training_steps: int) -> float:
    """Fact sheet section 8: s / max(1, W) during warmup, then max(0, (T - s) / max(1, T - W))."""
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - step) / float(max(1, num_training_steps - num_warmup_steps)))


def build_scheduler(optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """transformers' get_linear_schedule_with_warmup, rebuilt on LambdaLR with the same closed form.

    Importing transformers.optimization pulls in its trainer stack (seconds per launch);
    a partial (not a plain function) keeps the saved scheduler state shaped as upstream's.
    """
    lr_lambda = functools.partial(_linear_warmup_lambda, num_warmup_steps=warmup_steps,
                                  num_training_steps=total_steps)
    return LambdaLR(optimizer, lr_lambda)


def main(argv: list[str] | None = None) -> int:
    args = parse_reference_args(argv)
    if args.seed is not None:
        seed_everything(args.seed)
    device = resolve_device(args.device)

    formatter, key, (dataset_train, dataset_val) = prepare_inputs(args)
    train_loader, val_loader = build_loaders(dataset_train, dataset_val, args.batch_size)
    model, optimizer = build_model_and_optimizer(args, formatter, key, device)
    total_steps = len(train_loader) * args.num_epochs
    scheduler = build_scheduler(optimizer, args.warmup_steps, total_steps)
    loss_fn = build_loss(PAD_IDX, formatter.max_num_codes, formatter.block_size, args.seq2seq_weight).to(device)

    current_step = load_states(args.save_path, model, optimizer, scheduler,
                               args.initial_checkpoint, args.only_encoder)
    write_args_yaml(args.save_path, args)
    if args.log_wandb:
        wandb_init(args)
    train(model, loss_fn, train_loader, val_loader, optimizer, scheduler, device, args.save_path,
          total_steps, current_step, key, formatter.max_num_codes, formatter.block_size,
          args.log_interval, args.eval_interval, args.save_interval, args.log_wandb, args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
