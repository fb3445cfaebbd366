"""Variant, harmful: the Trainer clips gradients at 0.25 instead of the --gradient-clip-val it was given (a Trainer flag only)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(trainer_flags={"gradient_clip_val": 0.25}))
