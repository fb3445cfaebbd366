"""Variant, special: SIGKILLs itself right before the optimizer step of step 37.

Steps 0-36 complete (37 optimizer steps); step 37 gets as far as clipping. Nothing is flushed or
cleaned up, exactly like an OOM kill. Needs --steps > 37 (the default is 40).
"""

import os
import signal
import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


KILL_AT_STEP = 37


class KilledTrainer(Trainer):
    def step_optimizer(self):
        if self.step == KILL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)
        super().step_optimizer()


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=KilledTrainer))
