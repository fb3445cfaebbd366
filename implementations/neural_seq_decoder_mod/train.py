"""Command-line entry point: ``python -m implementations.neural_seq_decoder_mod.train --outputDir DIR --datasetPath FILE.pkl [flags]``."""
from __future__ import annotations

import sys

from .config import build_args, make_parser
from .trainer import train_model


def main(argv=None) -> int:
    parser = make_parser()
    namespace = parser.parse_args(argv)
    try:
        args = build_args(namespace)
    except ValueError as error:
        parser.error(str(error))  # exits 2 with usage, like any other bad flag
    train_model(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
