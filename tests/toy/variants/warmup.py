"""Variant, differs: a 10-step linear LR warmup is hard-coded, ignoring --warmup-steps.

Against train.py at defaults (no warmup) the LR differs from step 0 on (lr/10 at step 0).
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from train import Trainer, main, warmup_factor  # noqa: E402


class WarmupTrainer(Trainer):
    def build_scheduler(self):
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_factor(10))


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=WarmupTrainer))
