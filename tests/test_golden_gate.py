"""Gates on stored goldens: created and failed the first time, then only the candidate runs; updates say
what changed; a provenance that differs falls back to calibrated bands or fails saying which field;
calibration tells a deterministic baseline from a nondeterministic one; parallel gates share one golden."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import session
from parity.golden.store import INDEX_FILE, list_environments, load_golden
from parity.trace import schema

from conftest import REPO, TOY, toy_commands_recorded_in_process

pytestmark = pytest.mark.slow
STEPS = 4


def _pair(folder: Path, name: str = "toy-golden", candidate: str = "train.py", baseline_args: str = "",
          baseline: str = "train.py", one_thread: bool = True) -> Path:
    path = folder / "pairs" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = f'["{{python}}", "{TOY / baseline}", "--steps", "{{steps}}", "--ckpt-dir", "{{out}}/ckpt"{baseline_args}]'
    cand = f'["{{python}}", "{TOY / candidate}", "--steps", "{{steps}}", "--ckpt-dir", "{{out}}/ckpt"]'
    env = 'env = { OMP_NUM_THREADS = "1" }' if one_thread else ""
    path.write_text(f"""
[pair]
name = "{name}"
ignore_args = ["ckpt_dir", "lr"]
[baseline]
command = {base}
steps = {STEPS}
{env}
[candidate]
command = {cand}
steps = {STEPS}
{env}
[golden]
dir = "{folder / 'goldens'}"
[[expect]]
check = "verdict"
status = "IDENTICAL"
""")
    return path


def _parity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, Path]:
    """A pair whose golden was created by a first gate (which failed, as it must)."""
    root = tmp_path_factory.mktemp("golden-gate")
    pair, runs = _pair(root), root / "runs"
    first = _parity("gate", "--pair", str(pair), "--golden", "--runs-dir", str(runs))
    assert first.returncode == 1, first.stderr
    assert "no golden of toy-golden for environment" in first.stderr and "created" in first.stderr
    return pair, runs


def test_a_missing_golden_is_created_and_fails_the_first_gate(stored) -> None:
    pair, _ = stored
    goldens = pair.parent.parent / "goldens"
    [env] = list_environments(goldens, "toy-golden")
    trace, provenance = load_golden(goldens, "toy-golden", env)
    assert len(trace.steps) == STEPS and provenance.threads == 1


def test_the_second_gate_runs_only_the_candidate_and_passes(stored) -> None:
    pair, runs = stored
    result = session.gate(pair, runs_dir=runs, golden=True)
    assert result.passed and result.comparison.verdict == schema.IDENTICAL
    assert result.runs.baseline == result.golden.path and not result.golden.provenance_mismatches


def test_saving_over_a_golden_is_refused_and_update_reports_what_changed(stored, tmp_path) -> None:
    pair, runs = stored
    again = _parity("golden", "save", "--pair", str(pair), "--runs-dir", str(runs))
    errors = [line for line in again.stderr.splitlines() if line.startswith("parity: error:")]
    assert again.returncode == 2 and len(errors) == 1 and "parity golden update" in errors[0]
    assert "Traceback" not in again.stderr
    changed = _pair(tmp_path, baseline_args=', "--lr", "2e-3"')
    changed.write_text(changed.read_text().replace(str(tmp_path / "goldens"), str(pair.parent.parent / "goldens")))
    before = load_golden(pair.parent.parent / "goldens", "toy-golden", list_environments(pair.parent.parent / "goldens", "toy-golden")[0])[0]
    update = _parity("golden", "update", "--pair", str(changed), "--runs-dir", str(tmp_path / "runs"))
    assert update.returncode == 0, update.stderr
    assert "loss" in update.stdout and "step 0" in update.stdout, update.stdout
    # Put the original golden back for the other tests of this module.
    from parity.golden.store import save_golden

    save_golden(before, pair.parent.parent / "goldens", pair_name="toy-golden", pair_file_hash=None, code_revision=None)


def test_a_provenance_mismatch_fails_without_bands_and_falls_back_to_them(stored) -> None:
    pair, runs = stored
    goldens = pair.parent.parent / "goldens"
    [env] = list_environments(goldens, "toy-golden")
    index_path = goldens / "toy-golden" / env / INDEX_FILE
    original = index_path.read_text()
    index = json.loads(original)
    index["provenance"]["torch"] = "1.0.0"
    index_path.write_text(json.dumps(index))
    try:
        result = session.gate(pair, runs_dir=runs, golden=True)
        failure = result.failure("golden")
        assert failure is not None and "torch: golden 1.0.0" in failure.actual and "parity calibrate" in failure.summary
        calibration = session.calibrate(pair, repeats=2, runs_dir=runs)
        assert calibration.deterministic
        banded = session.gate(pair, runs_dir=runs, golden=True)
        assert banded.passed and banded.golden.banded and banded.golden.provenance_mismatches
    finally:
        index_path.write_text(original)
        (goldens / "toy-golden" / env / "bands.json").unlink(missing_ok=True)


def test_calibration_measures_a_nondeterministic_baseline(tmp_path) -> None:
    # Its two runs recorded in this process, one at a time (calibrate's launched, parallel runs: the test above).
    pair = _pair(tmp_path, name="toy-noisy", baseline="variants/nondeterministic.py", one_thread=False)
    with toy_commands_recorded_in_process():
        result = session.calibrate(pair, repeats=2, jobs=1, runs_dir=tmp_path / "runs")
    # Its noise sits near fp32 resolution: the parameters always differ, the loss often does.
    assert not result.deterministic and not result.digests_stable["params"]


def test_two_gates_at_once_share_one_golden(stored, tmp_path) -> None:
    pair, _ = stored
    procs = [subprocess.Popen([sys.executable, "-m", "parity", "gate", "--pair", str(pair), "--golden", "--runs-dir",
                               str(tmp_path / f"runs-{i}")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    goldens = pair.parent.parent / "goldens"
    load_golden(goldens, "toy-golden", list_environments(goldens, "toy-golden")[0])  # still intact: checksum holds


def test_auto_uses_a_stored_golden_and_records_the_baseline_where_none_is(stored, tmp_path) -> None:
    pair, runs = stored
    on_golden = session.gate(pair, runs_dir=runs, golden=session.AUTO_GOLDEN)
    assert on_golden.golden is not None and on_golden.golden_note is None and on_golden.passed
    assert on_golden.runs.baseline == on_golden.golden.path  # compared with the golden, not a recording
    # Another pair (no golden stored for it): the auto gate records its baseline and says why. Its sides are
    # the stored pair's commands, so the runs cached under `runs` serve it.
    other = _pair(tmp_path, name="toy-golden-other")
    fresh = session.gate(other, runs_dir=runs, golden=session.AUTO_GOLDEN)
    assert fresh.golden is None and fresh.passed
    assert fresh.golden_note.startswith("no golden for cpu-") and "baseline was recorded" in fresh.golden_note
    assert (runs / "toy-golden-other" / "baseline" / "trace-rank0.jsonl").exists()


def test_pytest_items_say_which_pairs_ran_on_goldens_also_under_xdist(stored) -> None:
    pair, runs = stored
    # From the project, like the gates above, so that the candidate they cached is reused (a pair without a
    # cwd runs where parity is invoked, and only a side inside a git checkout is cached).
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", str(pair),
                          "--parity-runs-dir", str(runs)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 pair(s) gated on stored goldens, 0 with both sides recorded" in run.stdout
