"""Reference toy trainer: a seeded MLP classifier whose variants under variants/ each change one thing.

The harness records this script from outside, so it imports nothing from parity. Every piece of
the training loop is a small method of `Trainer`; a variant subclasses it and overrides exactly one
method, which keeps the loop itself in one place.

Run: python tests/toy/train.py --steps 40 [--save-every 10] [--resume ckpt/step10.pt]
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

IN_FEATURES = 32
NUM_CLASSES = 10


def _numpy_state() -> list:
    """NumPy's global RNG state in types `torch.load(weights_only=True)` accepts."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]


def build_parser() -> argparse.ArgumentParser:
    """Return the flag set shared by train.py and every variant."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40, help="total optimizer steps, counted from 0")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-steps", type=int, default=0, help="linear LR warmup; 0 = constant LR")
    p.add_argument("--clip", type=float, default=1.0, help="max global grad norm")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--data-size", type=int, default=512)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps; 0 = never")
    p.add_argument("--ckpt-dir", type=Path, default=None, help="default: ./ckpt")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint written by --save-every")
    p.add_argument("--device", default="cpu")
    p.add_argument("--aug-noise", type=float, default=0.0,
                   help="input noise drawn from NumPy with a sign from Python's random (0 = off): makes both RNGs matter")
    p.add_argument("--grad-scaler", action="store_true", help="step through torch.amp.GradScaler (CPU, fp32)")
    return p


def warmup_factor(warmup_steps: int):
    """Return the LambdaLR factor for a linear warmup over `warmup_steps` (constant 1.0 when 0)."""

    # A closure, not a callable object: LambdaLR.state_dict() then stores None for it, so the
    # checkpoint holds only plain data and loads with weights_only=True.
    def factor(step: int) -> float:
        if warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / warmup_steps)

    return factor


def make_dataset(seed: int, size: int, split_seed: int | None = None) -> TensorDataset:
    """Return `size` Gaussian inputs labelled by a random linear teacher drawn from `seed`.

    `split_seed` draws other inputs for the same teacher (a held-out set). Private generators
    keep the data off the global RNG that model init and dropout draw from.
    """
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(IN_FEATURES, NUM_CLASSES, generator=g)
    if split_seed is not None:
        g.manual_seed(split_seed)
    x = torch.randn(size, IN_FEATURES, generator=g)
    return TensorDataset(x, (x @ teacher).argmax(dim=1))


class Trainer:
    """Train the toy MLP for `--steps` optimizer steps; resuming from a checkpoint is bit-identical.

    `step` is the number of completed optimizer steps, so inside `train_step` it is the index of
    the step being run. `epoch` and `position` (batches consumed in this epoch) locate the data.
    The trainer never reads the environment. By default all randomness comes from torch's global
    generator (init, dropout) and `loader_generator` (order); `--aug-noise` adds draws from NumPy's
    and Python's global RNGs, and checkpoints save and restore both either way.
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device)
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.epoch_loader_rng: torch.Tensor | None = None
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        random.seed(args.seed)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if args.grad_scaler else None
        self.dataset = self.build_data()
        self.model = self.build_model().to(self.device)
        self.optimizer = self.build_optimizer()
        self.scheduler = self.build_scheduler()
        self.loader_generator = torch.Generator()
        self.loader_generator.manual_seed(args.seed)
        self.loader = self.build_loader()

    # -- construction -------------------------------------------------------------------------

    def build_data(self) -> TensorDataset:
        return make_dataset(self.args.seed, self.args.data_size)

    def build_loader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=self.args.batch_size,
            shuffle=True,
            generator=self.loader_generator,
            num_workers=0,
            drop_last=True,
        )

    def build_model(self) -> nn.Module:
        h = self.args.hidden
        return nn.Sequential(
            nn.Linear(IN_FEATURES, h),
            nn.ReLU(),
            nn.Dropout(self.args.dropout),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Linear(h, NUM_CLASSES),
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(), lr=self.args.lr, weight_decay=self.args.weight_decay
        )

    def build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_factor(self.args.warmup_steps)
        )

    # -- one step -----------------------------------------------------------------------------

    def prepare_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        if self.args.aug_noise:
            sign = 1.0 if random.random() < 0.5 else -1.0
            noise = torch.from_numpy(np.random.standard_normal(tuple(x.shape)).astype(np.float32))
            x = x + sign * self.args.aug_noise * noise
        return x.to(self.device), y.to(self.device)

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def clip(self) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip)

    def step_optimizer(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run optimizer step `self.step` on one batch; return (loss, pre-clip grad norm)."""
        self.zero_grad()
        logits = self.model(x)
        loss = self.compute_loss(logits, y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        grad_norm = self.clip()
        self.step_optimizer()
        return loss, grad_norm

    def log(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Print one line per --log-every steps; the loss as float.hex so runs compare exactly."""
        if step % self.args.log_every and step != self.args.steps - 1:
            return
        # lr is read after scheduler.step(), so it is the LR the *next* step will use.
        lr = self.optimizer.param_groups[0]["lr"]
        # flush: killed.py dies by SIGKILL, which would drop a block-buffered stdout pipe.
        print(
            f"step={step} epoch={self.epoch} loss={loss.item().hex()} "
            f"grad_norm={grad_norm.item().hex()} next_lr={lr.hex()} loss_dec={loss.item():.6f}",
            flush=True,
        )

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        ckpt_dir = self.args.ckpt_dir or Path.cwd() / "ckpt"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = ckpt_dir / f"step{self.step}.pt"
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "torch_rng": torch.get_rng_state(),
                # The generator as it was *before* this epoch's iterator was made: resuming
                # rebuilds the same permutation from it and skips `position` batches.
                "epoch_loader_rng": self.epoch_loader_rng,
                "numpy_rng": _numpy_state(),
                "python_rng": list(random.getstate()[1]),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            },
            path,
        )
        print(f"saved {path}", flush=True)
        return path

    def load_checkpoint(self, path: Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = ckpt["step"]
        self.epoch = ckpt["epoch"]
        self.position = ckpt["position"]
        torch.set_rng_state(ckpt["torch_rng"])
        self.loader_generator.set_state(ckpt["epoch_loader_rng"])
        keys, pos, has_gauss, gauss = ckpt["numpy_rng"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate((3, tuple(ckpt["python_rng"]), None))
        if self.scaler is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        print(f"resumed {path} at step={self.step} epoch={self.epoch}", flush=True)

    # -- loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        if self.args.resume is not None:
            self.load_checkpoint(self.args.resume)
        while self.step < self.args.steps:
            self.epoch_loader_rng = self.loader_generator.get_state()
            # iter() draws a base seed from the generator and the sampler draws the permutation
            # on the first batch, so re-creating the iterator from the saved state replays both.
            for batch in itertools.islice(iter(self.loader), self.position, None):
                x, y = self.prepare_batch(batch)
                loss, grad_norm = self.train_step(x, y)
                self.step += 1
                self.position += 1
                self.log(self.step - 1, loss, grad_norm)
                if self.args.save_every and self.step % self.args.save_every == 0:
                    self.save_checkpoint()
                if self.step >= self.args.steps:
                    return
            self.epoch += 1
            self.position = 0


def main(argv: list[str] | None = None, trainer_cls: type[Trainer] = Trainer) -> int:
    args = build_parser().parse_args(argv)
    trainer_cls(args).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
