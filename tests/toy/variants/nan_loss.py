"""Variant, special: the loss becomes NaN from step 5 on (and with it grads and parameters)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


NAN_FROM_STEP = 5


class NanLossTrainer(Trainer):
    def compute_loss(self, logits, y):
        loss = super().compute_loss(logits, y)
        if self.step >= NAN_FROM_STEP:
            loss = loss * float("nan")
        return loss


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=NanLossTrainer))
