"""Fine-tune a tiny GPT-2 (random init) with transformers.Trainer on a synthetic character corpus.

    python tests/frameworks/hf_trainer/train.py --max-steps 6 --output-dir runs/hf

Forks import this module and call `main(**changes)`: each change replaces one TrainingArguments field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import the package from its parent folder, not its modules as top-level names.
    _HERE = Path(__file__).resolve().parent
    sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from hf_trainer.corpus import CharTokenizer, lm_blocks, synthetic_text  # noqa: E402


class StopAtStep(TrainerCallback):
    """Stop after `step` updates while the schedule still plans for max_steps (a preempted job)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", "--steps", type=int, default=6, help="optimizer updates")
    parser.add_argument("--output-dir", default="runs/hf-trainer", help="checkpoints and logs")
    parser.add_argument("--batch-size", type=int, default=16, help="per-device train batch size")
    parser.add_argument("--grad-accum", type=int, default=2, help="gradient accumulation steps")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--logging-steps", type=int, default=2)
    parser.add_argument("--save-steps", type=int, default=4)
    parser.add_argument("--stop-at", type=int, default=None, help="stop (and save) after this many updates")
    parser.add_argument("--resume-from-checkpoint", default=None, help="a checkpoint-N folder")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def build_model(vocab_size: int, block_size: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=32, n_layer=2, n_head=2,
                        n_inner=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return GPT2LMHeadModel(config)


def training_arguments(args: argparse.Namespace, **changes) -> TrainingArguments:  # noqa: ANN003
    settings = dict(
        output_dir=args.output_dir, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr, max_grad_norm=args.max_grad_norm,
        weight_decay=0.01, warmup_steps=args.warmup_steps, lr_scheduler_type="linear", max_steps=args.max_steps,
        logging_steps=args.logging_steps, save_steps=args.save_steps, save_strategy="steps", report_to=[],
        use_cpu=True, seed=args.seed, data_seed=args.seed, dataloader_num_workers=0, disable_tqdm=True,
    )
    settings.update(changes)
    return TrainingArguments(**settings)


def main(argv: list[str] | None = None, **changes) -> int:  # noqa: ANN003
    args = parse_args(argv)
    block_size = 32
    texts = synthetic_text(600)
    tokenizer = CharTokenizer(texts)
    train_dataset = lm_blocks(texts, tokenizer, block_size)
    training_args = training_arguments(args, **changes)
    model = build_model(len(tokenizer), block_size)
    callbacks = [StopAtStep(args.stop_at)] if args.stop_at else []
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
