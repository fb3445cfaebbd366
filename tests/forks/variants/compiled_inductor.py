"""Fork: the model is wrapped in torch.compile with the default inductor backend (fused kernels: on a GPU
the loss may differ in its last bits from eager; the GPU pair measures by how much)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; the base package lives one folder up.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from trainer.config import CONFIG  # noqa: E402
from trainer.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(dict(CONFIG, compile_backend="inductor")))
