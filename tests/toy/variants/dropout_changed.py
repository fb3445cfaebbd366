"""Variant, differs: dropout probability 0.3 hard-coded instead of --dropout (0.1)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from torch import nn  # noqa: E402

from train import Trainer, main  # noqa: E402


DROPOUT = 0.3


class DropoutChangedTrainer(Trainer):
    def build_model(self):
        model = super().build_model()
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = DROPOUT
        return model


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=DropoutChangedTrainer))
