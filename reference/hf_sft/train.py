"""BEFORE trainer of seed 004 (`python -m reference.hf_sft.train`): SFT with the seed's original TrainingArguments.

    python -m reference.hf_sft.data --out data.jsonl --n 4000
    python -m reference.hf_sft.train --data_path data.jsonl --model_size 1b --output_dir out --max_steps 30

Each argument the seed's AFTER version changes is a flag whose default is the BEFORE value (`BEFORE`);
`implementations.hf_sft_optimized.train` runs this same code with the AFTER values as defaults.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import datasets
import torch
from transformers import Trainer, TrainingArguments, set_seed
from transformers.utils import is_torch_tf32_available

from reference.hf_sft.config import PRESETS, build_model, count_parameters
from reference.hf_sft.data import PadCollator, read_jsonl, tokenize
from reference.hf_sft.tokenizer import ByteTokenizer

BEFORE: dict[str, Any] = {
    "gradient_accumulation_steps": 8,
    "max_seq_length": 2048,
    "tf32": None,                       # not set: Trainer leaves torch's TF32 flags alone
    "dataloader_num_workers": None,     # not set: 0, data loaded in the training process
    "dataloader_pin_memory": None,      # not set: TrainingArguments' own default (True) applies
    "dataloader_prefetch_factor": None,
    "gradient_checkpointing": None,     # not set: off
}
"""The seed's BEFORE values of every argument its AFTER version changes (max_seq_length is a script setting).

None means the BEFORE script does not pass the argument at all (the seed's "MISSING" lines), so
TrainingArguments' default applies; the flags accept `unset` (or `none`) to say the same."""
SEED_FIELDS = tuple(BEFORE)


def _optional_bool(text: str) -> bool | None:
    value = {"unset": None, "true": True, "on": True, "false": False, "off": False}.get(text.lower(), "bad")
    if value == "bad":
        raise argparse.ArgumentTypeError(f"{text!r}: use true, false or unset")
    return value


def _bool(text: str) -> bool:
    value = _optional_bool(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use true or false")
    return value


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "unset"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use an integer or none") from None


def build_parser(defaults: Mapping[str, Any], prog: str) -> argparse.ArgumentParser:
    """The trainer's flags; `defaults` gives the values of the seed's changed arguments."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--data_path", required=True, help="JSONL written by `python -m reference.hf_sft.data`")
    p.add_argument("--model_path", default=None, help="local checkpoint directory (overrides --model_size)")
    p.add_argument("--model_size", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_steps", type=int, default=30)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--scale", type=int, default=1, help="divide --max_seq_length by this (CPU runs on data made with --scale)")
    p.add_argument("--per_device_train_batch_size", type=int, default=2)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--warmup_ratio", type=float, default=0.1, help="linear warmup over this share of --max_steps, then cosine")
    p.add_argument("--save_final_model", type=_bool, default=True, help="save the model at the end of training")
    p.add_argument("--save_strategy", default="steps", choices=("steps", "no"),
                   help="`no` skips Trainer checkpoints, including the one it writes at max_steps (about 12 GB "
                        "with optimizer state for the 1b preset): GPU pair files and the benchmark use it")
    seed = p.add_argument_group("the seed's changed arguments (defaults: this script's side)")
    seed.add_argument("--gradient_accumulation_steps", type=int, default=defaults["gradient_accumulation_steps"])
    seed.add_argument("--max_seq_length", type=int, default=defaults["max_seq_length"], help="tokenizer truncation")
    seed.add_argument("--tf32", type=_optional_bool, default=defaults["tf32"], help="true, false or unset")
    seed.add_argument("--dataloader_num_workers", type=_optional_int, default=defaults["dataloader_num_workers"],
                      help="an integer or unset")
    seed.add_argument("--dataloader_pin_memory", type=_optional_bool, default=defaults["dataloader_pin_memory"],
                      help="true, false or unset")
    seed.add_argument("--dataloader_prefetch_factor", type=_optional_int, default=defaults["dataloader_prefetch_factor"],
                      help="an integer or none")
    seed.add_argument("--gradient_checkpointing", type=_optional_bool, default=defaults["gradient_checkpointing"],
                      help="true, false or unset")
    return p


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    return name


def seed_arguments(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The TrainingArguments the seed writes, as keyword arguments; arguments left unset are not passed."""
    supports_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    kwargs: dict[str, Any] = dict(
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        # bf16 where the GPU has it, else fp16 (the seed's two lines). On CPU neither: Trainer refuses fp16
        # there, and CPU bf16 autocast is a slow emulation the seed never ran, so CPU runs train in fp32.
        fp16=device == "cuda" and not supports_bf16,
        bf16=supports_bf16,
        tf32=args.tf32,
        dataloader_num_workers=args.dataloader_num_workers,
        dataloader_pin_memory=args.dataloader_pin_memory,
        dataloader_prefetch_factor=args.dataloader_prefetch_factor,
        gradient_checkpointing=args.gradient_checkpointing,
        optim="adamw_torch",
        save_steps=100,
    )
    return {k: v for k, v in kwargs.items() if v is not None}


def guard_for_device(kwargs: dict[str, Any], device: str) -> dict[str, Any]:
    """Drop settings TrainingArguments refuses on this machine, saying so; a no-op on an Ampere+ GPU with workers."""
    kwargs = dict(kwargs)
    # TrainingArguments(tf32=...) raises on a machine without Ampere-class CUDA (every CPU run). There TF32 does
    # not exist, so the guard leaves tf32 unset (Trainer then touches no TF32 flag); the flag's value stays
    # visible in the parsed arguments, and on an H200 the setting is passed through unchanged.
    if "tf32" in kwargs and not (device == "cuda" and is_torch_tf32_available()):
        print(f"note: --tf32 {kwargs.pop('tf32')} ignored: TF32 needs an Ampere or newer CUDA device", file=sys.stderr)
    # A prefetch factor applies to worker processes only; TrainingArguments refuses one with 0 workers.
    # Dropping it there lets `parity ablate` apply the prefetch toggle alone to the BEFORE side.
    if "dataloader_prefetch_factor" in kwargs and kwargs.get("dataloader_num_workers", 0) == 0:
        print(f"note: --dataloader_prefetch_factor {kwargs.pop('dataloader_prefetch_factor')} ignored: "
              "it needs --dataloader_num_workers > 0", file=sys.stderr)
    return kwargs


def training_arguments(args: argparse.Namespace, device: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps, learning_rate=args.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=math.ceil(args.warmup_ratio * args.max_steps),
        seed=args.seed, report_to=[], use_cpu=device == "cpu", save_strategy=args.save_strategy,
        **guard_for_device(seed_arguments(args, device), device))


def build_dataset(args: argparse.Namespace, tokenizer: ByteTokenizer) -> datasets.Dataset:
    """The JSONL examples tokenised and truncated at max_seq_length / scale."""
    raw = datasets.Dataset.from_list(read_jsonl(args.data_path))
    return raw.map(tokenize, remove_columns=raw.column_names,
                   fn_kwargs={"tokenizer": tokenizer, "max_length": args.max_seq_length // args.scale})


def build_trainer(args: argparse.Namespace) -> Trainer:
    device = resolve_device(args.device)
    set_seed(args.seed)
    tokenizer = ByteTokenizer()
    model = build_model(args.model_size, tokenizer.vocab_size, args.model_path)
    return Trainer(model=model, args=training_arguments(args, device), train_dataset=build_dataset(args, tokenizer),
                   data_collator=PadCollator(tokenizer.pad_token_id))


def run(argv: list[str] | None, defaults: Mapping[str, Any], prog: str) -> int:
    """Parse flags, train, optionally save, print one summary line. Shared by the BEFORE and AFTER scripts."""
    args = build_parser(defaults, prog).parse_args(argv)
    trainer = build_trainer(args)
    result = trainer.train()
    if args.save_final_model:
        trainer.save_model(str(Path(args.output_dir) / "final"))
    print(f"[{prog}] steps={result.global_step} train_loss={result.training_loss:.6f} "
          f"params={count_parameters(trainer.model)} runtime={result.metrics.get('train_runtime')}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(argv, BEFORE, prog="python -m reference.hf_sft.train")


if __name__ == "__main__":
    sys.exit(main())
