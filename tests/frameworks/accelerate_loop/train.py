"""Train a small MLP regressor with a plain accelerate loop: accumulate(), clip_grad_norm_, get_scheduler.

    python tests/frameworks/accelerate_loop/train.py --max-steps 6 --output-dir runs/acc

Forks import this module and call `main(argv, **changes)`: each change replaces one Config field.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from transformers import get_scheduler  # noqa: E402


@dataclasses.dataclass
class Config:
    batch_size: int = 16
    gradient_accumulation_steps: int = 2
    lr: float = 1e-2
    max_grad_norm: float = 0.5
    warmup_steps: int = 2
    scheduler: str = "cosine"
    log_every: int = 2
    hidden: int = 64
    seed: int = 7
    inject_inf_at: int = -1
    """Poison one update's gradients with inf (an fp16 overflow, reproduced on CPU)."""


def make_dataset(n: int = 512, features: int = 16) -> TensorDataset:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, 1, generator=g)
    return TensorDataset(x, x @ w + 0.1 * torch.randn(n, 1, generator=g))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", "--steps", type=int, default=6, help="optimizer updates")
    parser.add_argument("--output-dir", default="runs/accelerate-loop")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--loss-scaling", action="store_true",
                        help="dynamic loss scaling (a GradScaler) even on CPU, where accelerate makes none")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, **changes) -> int:  # noqa: ANN003
    args = parse_args(argv)
    cfg = dataclasses.replace(Config(), **changes)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, cpu=True,
                              mixed_precision=args.mixed_precision, project_dir=args.output_dir)
    if args.loss_scaling and accelerator.scaler is None:
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    set_seed(cfg.seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, cfg.hidden), torch.nn.GELU(), torch.nn.Linear(cfg.hidden, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    loader = DataLoader(make_dataset(), batch_size=cfg.batch_size, shuffle=True)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=args.max_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    updates = 0
    model.train()
    while updates < args.max_steps:
        for x, y in loader:
            with accelerator.accumulate(model):
                loss = torch.nn.functional.mse_loss(model(x), y)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if updates == cfg.inject_inf_at:
                        next(model.parameters()).grad.fill_(float("inf"))
                    norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                updates += 1
                if updates % cfg.log_every == 0:
                    accelerator.print(f"update {updates} loss {loss.item():.4f} grad_norm {float(norm):.4f}")
                if updates >= args.max_steps:
                    break
    accelerator.save_state(str(Path(args.output_dir) / "final"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
