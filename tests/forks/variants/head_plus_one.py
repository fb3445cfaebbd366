"""Fork, harmful: the classification head gets one extra output (an "unknown" class no row ever has)."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; the base package lives one folder up.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from trainer import model  # noqa: E402
from trainer.train import main  # noqa: E402

_build_model = model.build_model


def build_model_with_unknown_class(cfg: dict, in_features: int, num_classes: int) -> model.TabularClassifier:
    return _build_model(cfg, in_features, num_classes + 1)


model.build_model = build_model_with_unknown_class

if __name__ == "__main__":
    raise SystemExit(main())
