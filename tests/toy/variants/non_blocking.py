"""Variant, training-identical: batches move with .to(device, non_blocking=True)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class NonBlockingTrainer(Trainer):
    def prepare_batch(self, batch):
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=NonBlockingTrainer))
