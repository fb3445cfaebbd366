"""Variant, differs: the shuffle generator is seeded with --seed + 1, so batches differ from step 0.

The same generator object is kept, so checkpoints of this variant still resume exactly.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class DataOrderTrainer(Trainer):
    def build_loader(self):
        self.loader_generator.manual_seed(self.args.seed + 1)
        return super().build_loader()


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=DataOrderTrainer))
