"""Variant, special: noise of scale 1e-4 from an os.urandom-seeded generator is added to each input.

Two runs of this script differ from each other in the input batch from step 0 on; the global
RNG is untouched. At 1e-4 the loss differs in (nearly) every step; at 1e-6, near fp32 resolution,
whole 10-step runs came out with bit-equal losses, which left a noise floor of zero to measure.
"""

import os
import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402

from train import Trainer, main  # noqa: E402


NOISE_SCALE = 1e-4


class NondeterministicTrainer(Trainer):
    def prepare_batch(self, batch):
        x, y = super().prepare_batch(batch)
        g = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
        noise = torch.randn(x.shape, generator=g).to(x.device)
        return x + NOISE_SCALE * noise, y


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=NondeterministicTrainer))
