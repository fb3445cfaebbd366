"""Entry point: python tests/forks/trainer/train.py [--steps N] [--out-dir DIR]; forks call main(config)."""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the package from its parent folder, not its modules as top-level names.
    _HERE = Path(__file__).resolve().parent
    sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainer import data, engine, model  # noqa: E402
from trainer.config import CONFIG  # noqa: E402


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many updates")
    parser.add_argument("--out-dir", default=None, help="where the checkpoint goes (default: CONFIG output_dir)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the data pipeline stays on the CPU)")
    return parser.parse_args(argv)


def main(config: dict | None = None, argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = dict(CONFIG if config is None else config)
    if args.steps is not None:
        cfg["max_steps"] = args.steps
    if args.out_dir is not None:
        cfg["output_dir"] = args.out_dir
    seed_everything(cfg["seed"])

    train_set, val_set, vocab = data.prepare_datasets(cfg)
    train_loader = data.make_loader(train_set, cfg)
    val_loader = data.make_loader(val_set, cfg, train=False)
    net = model.build_model(cfg, data.NUM_FEATURES, len(vocab)).to(args.device)
    if cfg["compile_backend"]:
        net = torch.compile(net, backend=cfg["compile_backend"])

    # Like most trainers, a step budget overrides the epoch count (and may end mid-epoch).
    total_steps = cfg["max_steps"] or cfg["epochs"] * len(train_loader)
    optimizer = engine.build_optimizer(net, cfg)
    scheduler = engine.build_scheduler(optimizer, cfg, total_steps)

    step = 0
    for epoch in range(math.ceil(total_steps / len(train_loader))):
        train_loss, used = engine.train_one_epoch(net, train_loader, optimizer, scheduler, cfg,
                                                  max_batches=total_steps - step)
        step += used
        metrics = engine.evaluate(net, val_loader)
        print(f"epoch={epoch} step={step} train_loss={train_loss:.4f} val_loss={metrics['val_loss']:.4f} "
              f"val_acc={metrics['val_acc']:.3f}", flush=True)

    os.makedirs(cfg["output_dir"], exist_ok=True)
    torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "vocab": vocab, "step": step, "config": cfg}, os.path.join(cfg["output_dir"], "checkpoint.pt"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
