#!/usr/bin/env bash
# Where capture's host time goes on a GPU step: the synchronisations it adds (torch's sync debug mode, via
# tests/test_gpu_no_sync.py) and cProfile of the 168M preset in each capture level. Prints to stdout.
#   bash benchmarks/gpu_probe.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - <<'PY'
import collections, sys, tempfile, pathlib
sys.path.insert(0, "tests")
from test_gpu_no_sync import _synchronising_callers
for level in ("full", "every:2", "minimal"):
    with tempfile.TemporaryDirectory() as tmp:
        callers = _synchronising_callers(pathlib.Path(tmp) / "run", level)
    print(f"\n## synchronisations, level {level}: {len(callers)} over 6 steps")
    for caller, n in collections.Counter(callers).most_common():
        print(f"{n:4d}  {caller}")
PY
for mode in full minimal; do
  python3 benchmarks/capture_overhead.py --device cuda --preset gpu --dtype bf16 --profile $mode --steps 30 | head -70
done
