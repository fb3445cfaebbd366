"""Variant, special: the output layer sums its terms in a per-process random order from step 2 on.

`head` computes a linear layer as a scatter-add (the custom op toy::scatter_sum) whose rows are
accumulated in float32 in the order of a permutation drawn from os.urandom, as GPU atomics do: two
runs of this script agree bit for bit at steps 0 and 1 and differ from step 2 on, in that op only
(same inputs, different outputs). tests/test_locate.py checks that `parity locate` names it.
"""

import os
import sys
from collections import OrderedDict
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from train import IN_FEATURES, NUM_CLASSES, Trainer, main  # noqa: E402

SHUFFLE_FROM_STEP = 2


@torch.library.custom_op("toy::scatter_sum", mutates_args=())
def scatter_sum(src: torch.Tensor, index: torch.Tensor, size: int, shuffle: bool) -> torch.Tensor:
    """out[index[i]] += src[i] in float32, rows taken in a random order when `shuffle`."""
    n = src.shape[0]
    order = np.random.default_rng(int.from_bytes(os.urandom(8), "little")).permutation(n) if shuffle else np.arange(n)
    out = np.zeros((size, *src.shape[1:]), dtype=np.float32)
    np.add.at(out, index.numpy()[order], src.detach().numpy()[order])
    return torch.from_numpy(out)


@scatter_sum.register_fake
def _(src, index, size, shuffle):
    return src.new_empty((size, *src.shape[1:]))


def _backward(ctx, grad):
    return grad[ctx.index], None, None, None


def _setup_context(ctx, inputs, output):
    ctx.index = inputs[1]


scatter_sum.register_autograd(_backward, setup_context=_setup_context)


class ScatterLinear(nn.Module):
    """x @ weight + bias, the products of each row summed by scatter_sum."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        reference = nn.Linear(features, classes)
        self.weight = nn.Parameter(reference.weight.detach().t().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone())
        self.shuffle = False

    def forward(self, x):
        batch, features = x.shape
        terms = (x.unsqueeze(2) * self.weight).reshape(batch * features, -1)
        rows = torch.arange(batch).repeat_interleave(features)
        return scatter_sum(terms, rows, batch, self.shuffle) + self.bias


class ShuffledSumTrainer(Trainer):
    def build_model(self):
        h = self.args.hidden
        return nn.Sequential(OrderedDict(fc1=nn.Linear(IN_FEATURES, h), act1=nn.ReLU(), fc2=nn.Linear(h, h),
                                         act2=nn.ReLU(), head=ScatterLinear(h, NUM_CLASSES)))

    def train_step(self, x, y):
        self.model.head.shuffle = self.step >= SHUFFLE_FROM_STEP
        return super().train_step(x, y)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=ShuffledSumTrainer))
