"""accelerate loop fork: one batch of 32 per update instead of 2 accumulated batches of 16 (same samples per update)."""

import _path  # noqa: F401

from accelerate_loop.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(batch_size=32, gradient_accumulation_steps=1))
