"""HF Trainer fork: one batch of 32 per update instead of 2 accumulated batches of 16 (same samples per update)."""

import _path  # noqa: F401

from hf_trainer.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(per_device_train_batch_size=32, gradient_accumulation_steps=1))
