"""Variant, resume bug: --resume is accepted and ignored; training starts over from step 0.

Its steps are those of a continuous run; it differs from a resumed run by re-running the steps
before the checkpoint (and, aligned by resume offset, by its values from the first step on).
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class IgnoresResumeTrainer(Trainer):
    def load_checkpoint(self, path):
        print(f"resume requested from {path}; starting from scratch", flush=True)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=IgnoresResumeTrainer))
