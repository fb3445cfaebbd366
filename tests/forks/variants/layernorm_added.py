"""Fork, harmful: the encoder ends with a LayerNorm (which draws no random numbers at initialisation)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; the base package lives one folder up.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from torch import nn  # noqa: E402

from trainer import model  # noqa: E402
from trainer.train import main  # noqa: E402


class NormalizedMLPEncoder(model.MLPEncoder):
    def __init__(self, in_features: int, hidden: int, dropout: float) -> None:
        super().__init__(in_features, hidden, dropout)
        self.blocks.append(nn.LayerNorm(hidden))


model.MLPEncoder = NormalizedMLPEncoder

if __name__ == "__main__":
    raise SystemExit(main())
