"""Variant, base of a pair: the MLP uses exact GELU activations, in named layers (fc1, act1, ..., head).

The baseline for `gelu_tanh_layer2.py`, which swaps one activation for its tanh approximation; used by
tests/test_locate.py to check that `parity locate` names that module and op.
"""

import sys
from collections import OrderedDict
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from torch import nn  # noqa: E402

from train import IN_FEATURES, NUM_CLASSES, Trainer, main  # noqa: E402


def gelu_mlp(hidden: int, dropout: float, second: str = "none") -> nn.Sequential:
    """fc1 -> act1 -> drop -> fc2 -> act2 -> head; `second` is act2's GELU approximation."""
    return nn.Sequential(OrderedDict(
        fc1=nn.Linear(IN_FEATURES, hidden), act1=nn.GELU(), drop=nn.Dropout(dropout),
        fc2=nn.Linear(hidden, hidden), act2=nn.GELU(approximate=second), head=nn.Linear(hidden, NUM_CLASSES)))


class GeluTrainer(Trainer):
    def build_model(self):
        return gelu_mlp(self.args.hidden, self.args.dropout)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=GeluTrainer))
