"""Fork, harmful: the label vocabulary is numbered by first appearance, not sorted; same rows, other target ids."""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0]; the base package lives one folder up.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from trainer import data  # noqa: E402
from trainer.train import main  # noqa: E402


def build_vocab_by_first_appearance(labels: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for name in labels:
        vocab.setdefault(name, len(vocab))
    return vocab


data.build_vocab = build_vocab_by_first_appearance

if __name__ == "__main__":
    raise SystemExit(main())
