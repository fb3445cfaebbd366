"""Entry point of the OCCPAST finetune trainer: `python -m implementations.occpast.finetune ...`.

Also runs under `torchrun --nproc-per-node N -m implementations.occpast.finetune ...`.
Changes against the reference, each behind its flag: --warmup-pct (replaces
--warmup-steps), torchrun/DDP, --use-amp, --save-each-epoch; plus tqdm progress,
non_blocking transfers and a final save. Data, model, losses, formatter and the
per-batch numerics are imported from reference.histocc unchanged.
"""

from __future__ import annotations

import sys

from torch.utils.data.distributed import DistributedSampler

from reference.histocc.cli import build_parser
from reference.histocc.dataset import build_loaders
from reference.histocc.finetune import build_model_and_optimizer, build_scheduler, prepare_inputs, seed_everything
from reference.histocc.formatter import PAD_IDX
from reference.histocc.losses import build_loss
from reference.histocc.run_io import load_states, wandb_init, write_args_yaml

from .distributed import barrier, cleanup_distributed, init_distributed, wrap_model
from .engine import make_grad_scaler, train


def parse_args(argv: list[str] | None = None):
    """The reference's flags, with --warmup-steps replaced and the OCCPAST options added."""
    parser = build_parser("Finetune OccCANINE (OCCPAST variant: DDP, optional AMP, warmup as a share)")
    parser.add_argument("--warmup-pct", type=float, default=0.05,
                        help="warmup as a share of all steps: int(total_steps * pct) (replaces --warmup-steps)")
    parser.add_argument("--use-amp", action="store_true", default=False,
                        help="mixed precision: fp16 autocast + GradScaler on CUDA, bf16 autocast on CPU")
    parser.add_argument("--save-each-epoch", action="store_true", default=False,
                        help="also save epoch_<k>.bin (and last.bin) after every epoch")
    return parser.parse_args(argv)


def warmup_steps_from_pct(total_steps: int, warmup_pct: float) -> int:
    """OCCPAST's warmup length: a share of all steps, truncated towards zero."""
    return int(total_steps * warmup_pct)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seed is not None:
        seed_everything(args.seed)
    ctx, device = init_distributed(args.device)

    # Rank 0 prepares the CSVs; the others wait and then take the "already prepared" path.
    if not ctx.is_main_process:
        barrier(ctx)
    formatter, key, (dataset_train, dataset_val) = prepare_inputs(args)
    if ctx.is_main_process:
        barrier(ctx)

    train_sampler = None
    if ctx.distributed:
        train_sampler = DistributedSampler(dataset_train, num_replicas=ctx.world_size, rank=ctx.rank,
                                           shuffle=True, seed=args.seed if args.seed is not None else 0)
    train_loader, val_loader = build_loaders(dataset_train, dataset_val, args.batch_size, train_sampler)
    model, optimizer = build_model_and_optimizer(args, formatter, key, device)
    total_steps = len(train_loader) * args.num_epochs
    scheduler = build_scheduler(optimizer, warmup_steps_from_pct(total_steps, args.warmup_pct), total_steps)
    loss_fn = build_loss(PAD_IDX, formatter.max_num_codes, formatter.block_size, args.seq2seq_weight).to(device)

    current_step = load_states(args.save_path, model, optimizer, scheduler,
                               args.initial_checkpoint, args.only_encoder)
    if ctx.is_main_process:
        write_args_yaml(args.save_path, args)
        if args.log_wandb:
            wandb_init(args)
    model = wrap_model(model, ctx, device)
    try:
        train(model, loss_fn, train_loader, val_loader, optimizer, scheduler, device, args.save_path,
              total_steps, current_step, key, formatter.max_num_codes, formatter.block_size,
              args.log_interval, args.eval_interval, args.save_interval, ctx, train_sampler,
              make_grad_scaler(device, args.use_amp), args.use_amp, args.save_each_epoch,
              args.log_wandb, args.max_steps)
    finally:
        cleanup_distributed(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
