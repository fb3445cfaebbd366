"""Run configuration for the CLIP+DoRA trainers: presets, CLI options and validation.

Both trainers of the pair share this module so their command lines cannot drift
apart; the complete trainer adds no options of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Preset:
    """Model and data sizes for one hardware target; never holds optimisation settings."""

    image_size: int
    """Square image side in pixels; must be a multiple of `patch_size`."""
    patch_size: int
    """ViT patch side in pixels."""
    hidden_size: int
    """Transformer width."""
    intermediate_size: int
    """MLP width inside each block."""
    num_layers: int
    """Number of transformer blocks."""
    num_heads: int
    """Attention heads per block."""
    dora_last_n: int
    """DoRA adapts the attention output projection of this many final blocks."""
    dora_rank: int
    """Rank of the DoRA low-rank direction update."""
    target_dim: int
    """Width of the behavioural embedding being regressed (66 mirrors SPoSE dimensions)."""
    n_train: int
    """Synthetic training images."""
    n_test: int
    """Synthetic held-out images used for the early-stopping test loss."""
    batch_size: int
    """Mini-batch size for both splits."""


PRESETS: dict[str, Preset] = {
    # Sized so a 3-epoch CPU run takes a few seconds, including the import of transformers.
    "tiny": Preset(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
        num_layers=3, num_heads=2, dora_last_n=2, dora_rank=4, target_dim=16,
        n_train=192, n_test=64, batch_size=32,
    ),
    # ViT-B/16 geometry (86M frozen parameters) for GPU runs; still random init, never downloaded.
    "base": Preset(
        image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072,
        num_layers=12, num_heads=12, dora_last_n=2, dora_rank=32, target_dim=66,
        n_train=1024, n_test=256, batch_size=32,
    ),
}


@dataclass
class TrainConfig:
    """One trainer invocation; validated on construction so bad flags fail before any model is built."""

    out: Path
    """Directory receiving checkpoints, `losses.jsonl` and `final.json`."""
    epochs: int
    """Last epoch to train (1-based, inclusive); a resumed run continues up to it."""
    save_at_epochs: tuple[int, ...] | None = None
    """Epochs after which a checkpoint is written; None means every epoch."""
    resume: Path | None = None
    """Checkpoint to resume from; the epoch it holds is the last one already done."""
    seed: int = 0
    """Seed for model init, DoRA init and the training RNG streams (data is fixed separately)."""
    preset: str = "tiny"
    """Key into PRESETS."""
    device: str = "cpu"
    """Torch device type: 'cpu' or 'cuda'."""
    patience: int = 5
    """Epochs without a strict test-loss improvement before early stopping."""
    lr: float = 1e-3
    """AdamW learning rate (peak rate when a scheduler is used)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay; not a CLI flag, recorded in checkpoint metadata."""
    stop_after_epoch: int | None = None
    """Stop right after finishing (and checkpointing) this epoch, simulating an interrupted run."""
    scheduler: str = "none"
    """'none' or 'cosine' (per-step cosine decay over all `epochs`)."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.resume is not None:
            self.resume = Path(self.resume)
        if self.preset not in PRESETS:
            raise ValueError(f"--preset: unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device: expected 'cpu' or 'cuda', got {self.device!r}")
        if self.epochs < 1:
            raise ValueError(f"--epochs: must be at least 1, got {self.epochs}")
        if self.patience < 1:
            raise ValueError(f"--patience: must be at least 1, got {self.patience}")
        if self.lr < 0:
            raise ValueError(f"--lr: must be non-negative, got {self.lr}")
        if self.scheduler not in ("none", "cosine"):
            raise ValueError(f"--scheduler: expected 'none' or 'cosine', got {self.scheduler!r}")
        if self.save_at_epochs is not None:
            bad = [e for e in self.save_at_epochs if not 1 <= e <= self.epochs]
            if bad:
                raise ValueError(f"--save-at-epochs: epochs {bad} fall outside 1..{self.epochs}")
        if self.stop_after_epoch is not None and not 1 <= self.stop_after_epoch <= self.epochs:
            raise ValueError(f"--stop-after-epoch: must lie in 1..{self.epochs}, got {self.stop_after_epoch}")

    @property
    def sizes(self) -> Preset:
        """The preset this run uses."""
        return PRESETS[self.preset]

    def should_save(self, epoch: int) -> bool:
        """Whether to checkpoint after `epoch`; the stop epoch is always saved so it can be resumed."""
        if epoch == self.stop_after_epoch:
            return True
        return self.save_at_epochs is None or epoch in self.save_at_epochs

    def to_metadata(self) -> dict:
        """Plain-types view of the config, loadable with `torch.load(weights_only=True)`."""
        meta = dataclasses.asdict(self)
        meta["out"] = str(self.out)
        meta["resume"] = None if self.resume is None else str(self.resume)
        meta["save_at_epochs"] = None if self.save_at_epochs is None else list(self.save_at_epochs)
        return meta


def _epoch_list(text: str) -> tuple[int, ...]:
    """argparse type for '1,2,5'."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 1,2 but got {text!r}") from None


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Declare every trainer flag once, for both trainers of the pair."""
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--epochs", required=True, type=int, help="last epoch to train (inclusive)")
    parser.add_argument("--save-at-epochs", type=_epoch_list, default=None,
                        help="comma-separated epochs to checkpoint after (default: every epoch)")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to resume from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--stop-after-epoch", type=int, default=None,
                        help="exit right after saving this epoch (simulates an interrupted run)")
    parser.add_argument("--scheduler", choices=("none", "cosine"), default="none")


def parse_config(argv: list[str] | None, prog: str, description: str) -> TrainConfig:
    """Parse argv into a validated TrainConfig; argparse exits 2 on bad usage."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_train_options(parser)
    ns = parser.parse_args(argv)
    try:
        return TrainConfig(**vars(ns))
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits; keeps type checkers honest
