"""TRL SFT fork, harmful: no warmup (warmup_steps 1 -> 0) in the SFTConfig."""

import _path  # noqa: F401

from trl_sft.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(warmup_steps=0))
