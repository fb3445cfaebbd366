"""Fork, harmful: the rows are shuffled (fixed seed) before the train/val split, so training sees other rows."""

import random
import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; the base package lives one folder up.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from trainer import data  # noqa: E402
from trainer.train import main  # noqa: E402

_split_in_file_order = data.split


def split_shuffled(rows: list[dict], val_fraction: float) -> tuple[list[dict], list[dict]]:
    rows = list(rows)
    random.Random(17).shuffle(rows)
    return _split_in_file_order(rows, val_fraction)


data.split = split_shuffled

if __name__ == "__main__":
    raise SystemExit(main())
