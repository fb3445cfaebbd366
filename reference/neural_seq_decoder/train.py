"""Command-line entry point: ``python -m reference.neural_seq_decoder.train --outputDir DIR --datasetPath FILE.pkl [--key value ...]``."""
from __future__ import annotations

import argparse
import sys

from .config import UPSTREAM_DEFAULTS, add_addition_options, add_config_options, build_args
from .trainer import train_model


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference.neural_seq_decoder.train",
        description="Reference (upstream-faithful) GRU+CTC neural sequence decoder trainer.",
    )
    add_config_options(parser, UPSTREAM_DEFAULTS)
    add_addition_options(parser)
    return parser


def main(argv=None) -> int:
    namespace = make_parser().parse_args(argv)
    train_model(build_args(namespace, UPSTREAM_DEFAULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
