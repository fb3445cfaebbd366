"""Variant, differs: optimizer.zero_grad() is never called, so gradients accumulate.

Step 0 is identical (grads start as None); the gradients of step 1 carry step 0's.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


class NoZeroGradTrainer(Trainer):
    def zero_grad(self):
        pass  # the bug: keep last step's gradients


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=NoZeroGradTrainer))
