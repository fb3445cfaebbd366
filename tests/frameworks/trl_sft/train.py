"""Supervised fine-tuning of a tiny GPT-2 (random init) with TRL's SFTTrainer on an in-memory chat-free dataset.

    python tests/frameworks/trl_sft/train.py --max-steps 4 --output-dir runs/sft

Forks import this module and call `main(argv, **changes)`: each change replaces one SFTConfig field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    _HERE = Path(__file__).resolve().parent
    sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from datasets import Dataset  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from hf_trainer.corpus import CharTokenizer, fast_tokenizer, synthetic_text  # noqa: E402
from hf_trainer.train import build_model  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", "--steps", type=int, default=4)
    parser.add_argument("--output-dir", default="runs/trl-sft")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def tokenized_dataset(texts: list[str], tokenizer: CharTokenizer, max_length: int) -> Dataset:
    """Pre-tokenized rows of exactly `max_length` ids (SFTTrainer then skips its own tokenization)."""
    ids = [t for text in texts for t in tokenizer.encode(text)]
    rows = [ids[i:i + max_length] for i in range(0, len(ids) - max_length + 1, max_length)]
    return Dataset.from_dict({"input_ids": rows})


def main(argv: list[str] | None = None, **changes) -> int:  # noqa: ANN003
    args = parse_args(argv)
    texts = synthetic_text(400)
    tokenizer = CharTokenizer(texts)
    settings = dict(output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=8,
                    gradient_accumulation_steps=2, learning_rate=2e-3, max_grad_norm=1.0, warmup_steps=1,
                    logging_steps=2, save_steps=100, report_to=[], use_cpu=True, seed=args.seed, data_seed=args.seed,
                    max_length=args.max_length, packing=False, dataset_text_field="text", disable_tqdm=True,
                    )
    settings.update(changes)
    config = SFTConfig(**settings)
    model = build_model(len(tokenizer), args.max_length)
    trainer = SFTTrainer(model=model, args=config, processing_class=fast_tokenizer(texts),
                         train_dataset=tokenized_dataset(texts, tokenizer, args.max_length))
    trainer.train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
