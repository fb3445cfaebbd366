"""Command-line options of the finetune entry point, grouped so a modified trainer can reuse them.

Upstream flags and defaults follow fact sheet section 2. Flags marked ADDITION do not
exist upstream; their defaults leave upstream behaviour unchanged.
"""

from __future__ import annotations

import argparse


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Input CSV, columns, formatter and validation split."""
    parser.add_argument("--save-path", type=str, default="./Finetuned/",
                        help="work dir: prepared data, checkpoints, logs.csv, args.yaml")
    parser.add_argument("--dataset", type=str, default=None, help="input CSV")
    parser.add_argument("--input-col", type=str, default="occ1", help="text column (renamed to occ1)")
    parser.add_argument("--target-cols", type=str, nargs="+", default=None,
                        help="label columns, one code each; their count is the number of blocks")
    parser.add_argument("--language", type=str, default="unk", help="constant language tag")
    parser.add_argument("--language-col", type=str, default=None,
                        help="per-row language column (not together with --language)")
    parser.add_argument("--block-size", type=int, default=5, help="maximum tokens per code")
    parser.add_argument("--share-val", type=float, default=0.1, help="validation share")
    parser.add_argument("--use-within-block-sep", action="store_true", default=False,
                        help="split codes on ',' into multi-character tokens")
    parser.add_argument("--drop-bad-labels", action="store_true", default=False,
                        help="drop rows the formatter rejects instead of failing")
    parser.add_argument("--allow-codes-shorter-than-block-size", action="store_true", default=False,
                        help="allow codes shorter than the block size (EOS-filled)")


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """Print, save and evaluation intervals; optional W&B."""
    parser.add_argument("--log-interval", type=int, default=100, help="print every N batches")
    parser.add_argument("--eval-interval", type=int, default=1000, help="evaluate every N steps")
    parser.add_argument("--save-interval", type=int, default=1000, help="save every N steps")
    parser.add_argument("--log-wandb", action="store_true", default=False, help="log to Weights & Biases")
    parser.add_argument("--wandb-project-name", type=str, default="histco-v2-mixer")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Epochs, batch, learning rate and loss weight; the warmup flag is left to each trainer."""
    parser.add_argument("--num-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--seq2seq-weight", type=float, default=0.1, help="w in w*seq2seq + (1-w)*flat")


def add_init_options(parser: argparse.ArgumentParser) -> None:
    """Initial checkpoint and encoder freezing."""
    parser.add_argument("--initial-checkpoint", type=str, default=None,
                        help="checkpoint path (or 'occ-canine-v1', which needs the Hub)")
    parser.add_argument("--only-encoder", action="store_true", default=False,
                        help="load only encoder.* weights from the initial checkpoint")
    parser.add_argument("--freeze-encoder", action="store_true", default=False,
                        help="no gradients for the encoder; the optimizer gets the rest")


def add_addition_options(parser: argparse.ArgumentParser) -> None:
    """ADDITIONS beyond upstream, for testing; defaults keep upstream behaviour."""
    group = parser.add_argument_group("additions (not upstream; defaults keep upstream behaviour)")
    group.add_argument("--seed", type=int, default=None,
                       help="ADDITION: seed python/numpy/torch and fix the word-list order (default: unseeded)")
    group.add_argument("--max-steps", type=int, default=None,
                       help="ADDITION: stop after this many optimizer steps (default: no limit)")
    group.add_argument("--device", type=str, default=None, choices=["cpu", "cuda"],
                       help="ADDITION: device (default: cuda if available, else cpu, as upstream)")
    group.add_argument("--model-preset", type=str, default="base", choices=["tiny", "base"],
                       help="ADDITION: CANINE size; base is canine-s sized, tiny trains in seconds on CPU")
    group.add_argument("--encoder-path", type=str, default=None,
                       help="ADDITION: local pretrained CANINE weights (upstream downloads google/canine-s)")


def build_parser(description: str) -> argparse.ArgumentParser:
    """Parser with every option group shared by the reference and modified trainers."""
    parser = argparse.ArgumentParser(description=description)
    add_data_options(parser)
    add_logging_options(parser)
    add_training_options(parser)
    add_init_options(parser)
    add_addition_options(parser)
    return parser


def parse_reference_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Upstream finetune.py flags plus the additions."""
    parser = build_parser("Finetune OccCANINE (clean-room reference of upstream finetune.py)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear-schedule warmup steps")
    return parser.parse_args(argv)
