"""Run artefacts on disk: checkpoints, resume/init (`load_states`), logs.csv and args.yaml."""

from __future__ import annotations

import csv
import os

import torch
import yaml
from torch import nn

LAST_CHECKPOINT = "last.bin"
LOG_FILE = "logs.csv"
ARGS_FILE = "args.yaml"
# Column order of logs.csv; lr is the lr of the *next* update (read after scheduler.step).
LOG_COLUMNS = ["step", "batch_time", "batch_time_data", "train_loss", "val_loss", "val_loss_linear",
               "val_loss_seq2seq", "seq_acc", "token_acc", "flat_acc", "lr"]


def checkpoint_state(model: nn.Module, optimizer, scheduler, step: int, key: dict) -> dict:
    """The dict upstream saves; it holds only tensors and plain containers."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "key": key,
    }


def save_checkpoint(save_dir: str, state: dict, name: str | None = None) -> None:
    """Write `<step>.bin` (or `<name>`) and `last.bin`."""
    torch.save(state, os.path.join(save_dir, name or f"{state['step']}.bin"))
    torch.save(state, os.path.join(save_dir, LAST_CHECKPOINT))


def load_states(save_dir: str, model: nn.Module, optimizer, scheduler,
                initial_checkpoint: str | None = None, only_encoder: bool = False) -> int:
    """Resume from save_dir/last.bin if present, else optionally init from a checkpoint.

    Returns the global step to continue from: the saved step on resume, otherwise 0
    (an initial checkpoint brings weights only, with a fresh optimizer and scheduler).
    """
    last = os.path.join(save_dir, LAST_CHECKPOINT)
    if os.path.isfile(last):
        # Default torch.load arguments, as upstream (weights_only=True on torch >= 2.6).
        states = torch.load(last)
        model.load_state_dict(states["model"])
        optimizer.load_state_dict(states["optimizer"])
        scheduler.load_state_dict(states["scheduler"])
        print(f"Resumed from {last} at step {states['step']}")
        return states["step"]
    if initial_checkpoint is None:
        return 0
    if initial_checkpoint == "occ-canine-v1":
        # Upstream downloads christianvedel/OccCANINE from the Hub; this offline reference cannot.
        raise ValueError("--initial-checkpoint occ-canine-v1 needs the Hugging Face Hub, which this "
                         "offline reference does not reach; pass a local checkpoint path instead")
    model_state = torch.load(initial_checkpoint)["model"]
    if only_encoder:
        prefix = "encoder."
        encoder_state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
        model.encoder.load_state_dict(encoder_state)
    else:
        model.load_state_dict(model_state)
    print(f"Initialised from {initial_checkpoint} (only encoder: {only_encoder})")
    return 0


def update_summary(step: int, metrics: dict, filename: str, log_wandb: bool = False) -> None:
    """Append one row to logs.csv, writing the header only when the file is new."""
    row = {"step": step, **metrics}
    write_header = not os.path.isfile(filename)
    with open(filename, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        if write_header:
            writer.writeheader()
        writer.writerow(row)
    if log_wandb:
        import wandb  # optional dependency, imported only when asked for

        wandb.log(row)


def write_args_yaml(save_dir: str, args) -> None:
    """Dump the parsed arguments; upstream rewrites this file at every launch."""
    with open(os.path.join(save_dir, ARGS_FILE), "w") as f:
        yaml.dump(vars(args), f)


def wandb_init(args) -> None:
    """Start a W&B run named after the work dir (optional dependency, imported only when asked for)."""
    import wandb

    wandb.init(project=args.wandb_project_name, name=os.path.basename(os.path.normpath(args.save_path)),
               config=vars(args))
