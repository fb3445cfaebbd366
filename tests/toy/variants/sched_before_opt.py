"""Variant, differs: scheduler.step() runs before optimizer.step() (the classic order bug).

Compare it with train.py run with --warmup-steps 10 (and pass the same flag here): every step
then uses the LR meant for the next one, from step 0 on. With a constant LR (no warmup) the
swap changes nothing.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class SchedBeforeOptTrainer(Trainer):
    def step_optimizer(self):
        self.scheduler.step()
        self.optimizer.step()


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=SchedBeforeOptTrainer))
