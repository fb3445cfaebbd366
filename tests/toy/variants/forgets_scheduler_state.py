"""Variant, resume bug: --resume restores everything but the LR scheduler, which restarts at 0.

The optimizer still carries the checkpoint's LR, so the first resumed step is fine and the next
scheduler.step() sets the LR of warmup step 1. Visible only while the LR schedule still moves:
resume inside the warmup (e.g. --warmup-steps 20, resume at 10). With a constant LR it is
bit-identical to a correct resume.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class ForgetsSchedulerStateTrainer(Trainer):
    def load_checkpoint(self, path):
        fresh = self.scheduler.state_dict()
        super().load_checkpoint(path)
        self.scheduler.load_state_dict(fresh)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=ForgetsSchedulerStateTrainer))
