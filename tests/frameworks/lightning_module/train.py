"""Lightning test bed: python tests/frameworks/lightning_module/train.py [--max-steps N] [--default-root-dir DIR].

A small classifier written the way Lightning projects write one: a LightningModule that saves its
hyperparameters, a LightningDataModule over a synthetic dataset drawn from a seed, an AdamW optimizer
with a per-step warmup schedule, gradient accumulation and clipping set on the Trainer. Variants
under variants/ change one thing each by calling `main()` with other pieces.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class SyntheticBlobs(L.LightningDataModule):
    """Gaussian blobs around one random centre per class; the data depends only on `data_seed`."""

    def __init__(self, num_samples: int = 512, num_features: int = 16, num_classes: int = 4,
                 batch_size: int = 16, data_seed: int = 1234) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        generator = torch.Generator().manual_seed(hp.data_seed)
        centres = torch.randn(hp.num_classes, hp.num_features, generator=generator) * 2.0
        labels = torch.randint(0, hp.num_classes, (hp.num_samples,), generator=generator)
        features = centres[labels] + torch.randn(hp.num_samples, hp.num_features, generator=generator)
        split = hp.num_samples * 7 // 8
        self.train_set = TensorDataset(features[:split], labels[:split])
        self.val_set = TensorDataset(features[split:], labels[split:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=0)


class BlobClassifier(L.LightningModule):
    def __init__(self, num_features: int = 16, num_classes: int = 4, hidden: int = 32, dropout: float = 0.1,
                 lr: float = 0.05, weight_decay: float = 0.01, warmup_steps: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = self.build_net()

    def build_net(self) -> nn.Module:
        hp = self.hparams
        return nn.Sequential(nn.Linear(hp.num_features, hp.hidden), nn.ReLU(), nn.Dropout(hp.dropout),
                             nn.Linear(hp.hidden, hp.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / hp.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=6, help="optimizer updates to run")
    parser.add_argument("--default-root-dir", default="lightning_runs", help="checkpoints go under it")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--accumulate-grad-batches", type=int, default=2)
    parser.add_argument("--gradient-clip-val", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--log-every-n-steps", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=4, help="save a checkpoint every N updates")
    return parser.parse_args(argv)


def main(model_cls: type[BlobClassifier] = BlobClassifier, trainer_flags: dict[str, Any] | None = None,
         argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    L.seed_everything(args.seed, workers=True)
    data = SyntheticBlobs(batch_size=args.batch_size)
    model = model_cls(lr=args.lr)
    checkpoints = ModelCheckpoint(dirpath=os.path.join(args.default_root_dir, "checkpoints"),
                                  every_n_train_steps=args.checkpoint_every, save_top_k=-1)
    flags = dict(accelerator="cpu", devices=1, max_steps=args.max_steps,
                 accumulate_grad_batches=args.accumulate_grad_batches, gradient_clip_val=args.gradient_clip_val,
                 logger=False, callbacks=[checkpoints], enable_checkpointing=True, enable_progress_bar=False,
                 enable_model_summary=False, default_root_dir=args.default_root_dir,
                 log_every_n_steps=args.log_every_n_steps, deterministic=True, limit_val_batches=2,
                 val_check_interval=4, num_sanity_val_steps=1)
    trainer = L.Trainer(**{**flags, **(trainer_flags or {})})
    trainer.fit(model, datamodule=data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
