"""HF Trainer fork, harmful: max_grad_norm 1.0 -> 0.5 in the TrainingArguments (the command line is unchanged)."""

import _path  # noqa: F401

from hf_trainer.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(max_grad_norm=0.5))
