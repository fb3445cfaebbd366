"""TRL SFT fork, benign: log every update (logging_steps 2 -> 1) in the SFTConfig."""

import _path  # noqa: F401

from trl_sft.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(logging_steps=1))
