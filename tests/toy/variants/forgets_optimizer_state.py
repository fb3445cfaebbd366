"""Variant, resume bug: --resume restores everything but the optimizer, which starts fresh.

Adam's moments and step count restart at the resume step, so the first resumed step's
parameter update already differs from a continuous run.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class ForgetsOptimizerStateTrainer(Trainer):
    def load_checkpoint(self, path):
        fresh = self.optimizer.state_dict()  # not stepped yet: what a new optimizer holds
        super().load_checkpoint(path)
        self.optimizer.load_state_dict(fresh)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=ForgetsOptimizerStateTrainer))
