"""The facade: a pair's [tolerance] gives one verdict through `parity gate`, `parity report --pair` and pytest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import session
from parity.checks.base import Tolerance
from parity.pairs import load_pair
from parity.trace import schema

from conftest import PAIR_RUNS, REPO, side_table


def _pair(folder: Path, tolerance: str) -> Path:
    """The toy trainer against itself with a 5% higher lr: losses drift apart by far less than 1%. The baseline
    is toy-warmup's, so that its run cached under PAIR_RUNS (by that pair's tests or gate) is reused."""
    path = folder / "pairs" / "lr-nudge.toml"
    path.parent.mkdir(parents=True)
    baseline = load_pair("toy-warmup").baseline
    path.write_text(f"""
[pair]
name = "lr-nudge"
ignore_args = ["ckpt_dir", "lr"]
{side_table("baseline", baseline)}
{side_table("candidate", baseline, "--lr", "1.05e-3")}
[tolerance]
loss = "{tolerance}"
[[expect]]
check = "loss"
status = "EQUIVALENT"
reason = "a 5% lr nudge moves the loss by less than the pair's tolerance"
[[expect]]
check = "params"
status = "DIFFERENT"
""")
    return path


def _parity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def nudged(tmp_path_factory) -> tuple[Path, Path]:
    return _pair(tmp_path_factory.mktemp("tolerance"), "1%"), PAIR_RUNS


def test_pair_tolerance_gives_one_verdict_through_gate_report_and_pytest(nudged, tmp_path):
    pair, runs = nudged
    gate = _parity("gate", "--pair", str(pair), "--runs-dir", str(runs), "--format", "json")
    assert gate.returncode == 0, gate.stderr
    assert json.loads(gate.stdout)["passed"] is True

    out = tmp_path / "report.json"
    report = _parity("report", "--pair", str(pair), "--runs-dir", str(runs), "--format", "json", "-o", str(out))
    assert report.returncode == 0, report.stderr
    loss = next(c for c in json.loads(out.read_text())["checks"] if c["name"] == "loss")
    assert loss["status"] == schema.EQUIVALENT and loss["first_divergent_step"] == 1

    # Run from the project, like the gate and report above: the run cache's key holds the run directory resolved
    # from where parity runs, so the items reuse the runs recorded above.
    items = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pair),
                            "--parity-runs-dir", str(runs), "--rootdir", str(pair.parent)],
                           capture_output=True, text=True, cwd=REPO)
    assert items.returncode == 0 and "2 passed" in items.stdout, items.stdout + items.stderr


def test_command_line_tolerance_overrides_the_pairs(nudged, tmp_path):
    pair, runs = nudged
    report = _parity("report", "--pair", str(pair), "--runs-dir", str(runs), "--format", "json",
                     "-o", str(tmp_path / "r.json"), "--tolerance", "loss:bits")
    assert report.returncode == 1 and "loss is DIFFERENT, expected EQUIVALENT" in report.stderr
    strict = session.gate(pair, runs_dir=runs, tolerance=Tolerance())
    assert [(f.check, f.actual) for f in strict.failures] == [("loss", schema.DIFFERENT)]


def test_without_the_tolerance_the_same_runs_fail_everywhere(nudged, tmp_path):
    pair, runs = _pair(tmp_path, "bits"), nudged[1]  # the same commands: the cached runs are reused
    gate = session.gate(pair, runs_dir=runs)
    report = session.report(pair, runs_dir=runs)
    assert not gate.passed and gate.failures == report.failures
    assert session.tolerances(session.load(pair)) == {"loss": Tolerance()}
