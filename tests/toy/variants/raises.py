"""Variant, special: raises RuntimeError at the start of step 12 (steps 0-11 complete)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


RAISE_AT_STEP = 12


class RaisesTrainer(Trainer):
    def train_step(self, x, y):
        if self.step == RAISE_AT_STEP:
            raise RuntimeError(f"planted failure at step {self.step}")
        return super().train_step(x, y)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=RaisesTrainer))
