"""`python -m parity`: the same as the `parity` console script."""

from parity.cli import run

run()
