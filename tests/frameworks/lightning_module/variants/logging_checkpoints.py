"""Variant, benign: logs every step and saves a checkpoint every 2 updates instead of every 4."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(argv=[*sys.argv[1:], "--log-every-n-steps", "1", "--checkpoint-every", "2"]))
