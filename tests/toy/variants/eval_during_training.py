"""Variant, training-changing: `model.eval()` left on for training, so dropout never drops anything.

The model is switched to eval mode once, after it is built, as a trainer does that runs an evaluation
before its loop and forgets `model.train()`. Loss differs from step 0; the loop order only gains an
`eval()` before the first step, which looks inert unless the training mode at the forward is recorded.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from torch import nn  # noqa: E402

from train import Trainer, main  # noqa: E402


class EvalDuringTrainingTrainer(Trainer):
    def build_model(self) -> nn.Module:
        model = super().build_model()
        model.eval()
        return model


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=EvalDuringTrainingTrainer))
