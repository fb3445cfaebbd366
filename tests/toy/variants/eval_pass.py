"""Variant, training-identical: an eval pass on a fixed held-out set after every 10th step.

It runs under torch.no_grad() in eval mode (dropout off), so it draws no random numbers and
leaves no gradients; a recorder that hooks module forwards sees extra, eval-phase forwards.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from train import Trainer, main, make_dataset  # noqa: E402


EVAL_EVERY = 10
EVAL_SIZE = 256


class EvalPassTrainer(Trainer):
    _held_out = None

    def train_step(self, x, y):
        out = super().train_step(x, y)
        if self.step % EVAL_EVERY == 0:
            self._evaluate()
        return out

    def _evaluate(self):
        if self._held_out is None:
            # Same teacher, other inputs; built lazily from a private generator, so no global RNG.
            data = make_dataset(self.args.seed, EVAL_SIZE, split_seed=self.args.seed + 1)
            self._held_out = [t.to(self.device) for t in data.tensors]
        x, y = self._held_out
        self.model.eval()
        with torch.no_grad():
            loss = self.compute_loss(self.model(x), y)
        self.model.train()
        print(f"eval step={self.step} loss={loss.item():.6f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=EvalPassTrainer))
