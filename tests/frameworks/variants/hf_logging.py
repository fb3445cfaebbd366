"""HF Trainer fork, benign: log every step and save every 3 steps instead of every 2 and 4."""

import _path  # noqa: F401

from hf_trainer.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(logging_steps=1, save_steps=3))
