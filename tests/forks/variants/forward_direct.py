"""Fork, benign: the loop calls model.forward(x) instead of model(x), which skips the module's hooks.

The model's GRU refiner is then called first-level with a state of zeros, a constant: a capture that
takes the outermost hooked call for "the model" would record that constant as the model input.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; the base package lives one folder up.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch  # noqa: E402
from torch import nn  # noqa: E402

from trainer import engine  # noqa: E402
from trainer.train import main  # noqa: E402


def forward_batch_direct(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.forward(batch["features"])


engine.forward_batch = forward_batch_direct

if __name__ == "__main__":
    raise SystemExit(main())
