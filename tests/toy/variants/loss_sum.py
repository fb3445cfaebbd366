"""Variant, differs: cross-entropy with reduction='sum' instead of the mean over the batch."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch.nn.functional as F  # noqa: E402

from train import Trainer, main  # noqa: E402


class LossSumTrainer(Trainer):
    def compute_loss(self, logits, y):
        return F.cross_entropy(logits, y, reduction="sum")


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=LossSumTrainer))
