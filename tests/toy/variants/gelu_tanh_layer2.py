"""Variant, differs from gelu.py: the second activation (act2) is GELU's tanh approximation.

Everything else, the initial parameters included, is as in gelu.py, so the outputs of act2 are the
first values that differ (step 0, forward): `parity locate` must name act2 and aten.gelu.
"""

import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402

_spec = importlib.util.spec_from_file_location("toy_gelu", _HERE / "gelu.py")
_gelu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gelu)


class GeluTanhTrainer(Trainer):
    def build_model(self):
        return _gelu.gelu_mlp(self.args.hidden, self.args.dropout, second="tanh")


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=GeluTanhTrainer))
