"""Variant, resume bug: --resume restores neither torch's global RNG nor the shuffle generator.

Dropout masks differ from the first resumed step on. The batch order differs only after the
first epoch boundary: resuming inside epoch 0 replays epoch 0's order by accident.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from train import Trainer, main  # noqa: E402


class ForgetsRngStateTrainer(Trainer):
    def load_checkpoint(self, path):
        torch_rng = torch.get_rng_state()
        loader_rng = self.loader_generator.get_state()
        super().load_checkpoint(path)
        torch.set_rng_state(torch_rng)
        self.loader_generator.set_state(loader_rng)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=ForgetsRngStateTrainer))
