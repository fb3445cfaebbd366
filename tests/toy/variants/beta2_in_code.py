"""Variant, differs: AdamW betas=(0.9, 0.99) hard-coded in code rather than from a flag."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from train import Trainer, main  # noqa: E402


class Beta2InCodeTrainer(Trainer):
    def build_optimizer(self):
        return torch.optim.AdamW(
            self.model.parameters(),
            lr=self.args.lr,
            weight_decay=self.args.weight_decay,
            betas=(0.9, 0.99),
        )


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=Beta2InCodeTrainer))
