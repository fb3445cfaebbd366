"""Put tests/frameworks on sys.path so that a variant run as a script imports the test beds as packages."""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
