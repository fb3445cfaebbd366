"""Variant, training-identical: the loss is spelled nll_loss(log_softmax(logits)).

On CPU F.cross_entropy with class targets runs exactly these two ops, so forward and backward
are bit-identical (checked in tests/test_toy_family.py).
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch.nn.functional as F  # noqa: E402

from train import Trainer, main  # noqa: E402


class RefactorLossTrainer(Trainer):
    def compute_loss(self, logits, y):
        return F.nll_loss(F.log_softmax(logits, dim=-1), y)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=RefactorLossTrainer))
