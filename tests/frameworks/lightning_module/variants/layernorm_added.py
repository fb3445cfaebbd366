"""Variant, harmful: a LayerNorm after the hidden layer (its initialisation draws no random numbers)."""

import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train import BlobClassifier, main  # noqa: E402


class NormedBlobClassifier(BlobClassifier):
    def build_net(self) -> nn.Module:
        hp = self.hparams
        return nn.Sequential(nn.Linear(hp.num_features, hp.hidden), nn.LayerNorm(hp.hidden), nn.ReLU(),
                             nn.Dropout(hp.dropout), nn.Linear(hp.hidden, hp.num_classes))


if __name__ == "__main__":
    raise SystemExit(main(model_cls=NormedBlobClassifier))
