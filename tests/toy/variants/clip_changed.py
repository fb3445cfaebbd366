"""Variant, differs: the grad-norm clip threshold is hard-coded to 0.5 instead of --clip.

At defaults the pre-clip grad norm is 0.562 at step 0 (about 0.36-0.57 over 40 steps, never
above --clip 1.0), so the clipped gradients and the parameters differ from step 0, the loss from
step 1. The pre-clip grad norm of step 0 is still identical.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from train import Trainer, main  # noqa: E402


CLIP = 0.5


class ClipChangedTrainer(Trainer):
    def clip(self):
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=ClipChangedTrainer))
