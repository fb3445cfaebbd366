"""A small data-parallel trainer: one process, DDP (`--ddp`) or FSDP2 `fully_shard` (`--fsdp`), same global batch.

Written the way projects launch it, so parity records it from outside and it imports nothing from parity:
`torchrun --nproc-per-node 2 tests/distributed/fsdp_train.py --fsdp` (torch.distributed reads RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment; gloo on CPU). Every step takes the same
global batch of `--global-batch` rows in every mode; each rank trains on its contiguous slice of it.

`--desync-step S` is the negative control of replica consistency: at step S the last rank nudges one
weight by one ulp just before that update, as a rank that skipped a synchronisation would; DDP never notices.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

IN_FEATURES = 16
NUM_CLASSES = 5  # odd on purpose: FSDP2 pads the head's shards unevenly (3 + 2 rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fsdp", action="store_true", help="shard parameters with FSDP2 fully_shard")
    mode.add_argument("--ddp", action="store_true", help="replicate with DistributedDataParallel")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--global-batch", type=int, default=32)
    p.add_argument("--data-size", type=int, default=256)
    p.add_argument("--desync-step", type=int, default=-1, help="negative control: break replica consistency here")
    return p


def build_model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(IN_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, NUM_CLASSES))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n, IN_FEATURES, generator=g)
    y = (x[:, :NUM_CLASSES].argmax(dim=1) + (x[:, -1] > 1).long()) % NUM_CLASSES
    return x, y


def wrap(model: nn.Module, args: argparse.Namespace) -> nn.Module:
    if args.fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        return fully_shard(model)
    if args.ddp:
        return nn.parallel.DistributedDataParallel(model)
    return model


@torch.no_grad()
def _nudge(weight: torch.Tensor) -> None:
    """Move one element of `weight` (this rank's own copy or shard) up by one ulp."""
    local = weight.to_local() if hasattr(weight, "to_local") else weight
    first = local.view(-1)[:1]
    first.copy_(torch.nextafter(first, torch.full_like(first, float("inf"))))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if (args.fsdp or args.ddp) and not dist.is_initialized():
        dist.init_process_group("gloo")  # env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} is not divisible by {world} ranks")
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = wrap(build_model(args.hidden), args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    x, y = make_data(args.data_size, args.seed)
    order = torch.randperm(args.data_size, generator=torch.Generator().manual_seed(args.seed))
    local = args.global_batch // world
    for step in range(args.steps):
        start = (step * args.global_batch) % args.data_size
        rows = order[start:start + args.global_batch][rank * local:(rank + 1) * local]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[rows]), y[rows])
        loss.backward()
        if step == args.desync_step and rank == world - 1:
            _nudge(next(model.parameters()))
        optimizer.step()
        if rank == 0:
            print(f"step {step} loss {loss.item():.6f}", flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
