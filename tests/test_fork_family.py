"""The fork family under tests/forks through record and compare: forks that cannot change training are
IDENTICAL, and every harmful fork is DIFFERENT with the right root cause ranked first.

One baseline recording serves every pair (their baseline sides are the same command); the forks are
recorded two at a time from their pair files, so the pair files themselves are what is tested, and
cached where `pytest parity/` (which gates the same pair files) finds them.
"""

from __future__ import annotations

import importlib
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from parity import session
from parity.checks.compare import Comparison
from parity.pairs import Pair, load_pair
from parity.trace import schema
from parity.trace.reader import load_run

from conftest import REPO, record_pair_side

pytestmark = pytest.mark.slow

FORKS_DIR = REPO / "tests" / "forks"
STEPS = 24  # the pair files' cpu steps, so that runs cached here serve `pytest parity/` too
MODEL_CLASS = "TabularClassifier"
BENIGN = ["compiled", "forward_direct", "output_dir_changed"]
# fork -> category of the cause that must be ranked first
ROOT_CAUSE = {
    "label_vocab_reordered": "labels",
    "rows_shuffled_before_split": "data_content",
    "head_plus_one": "model",
    "layernorm_added": "model",
    "aug_stronger": "augmentation",
    "config_lr": "optimizer",
    "workers": "augmentation",
}
# fork -> (config setting, baseline value, fork value) that its top cause must name as the change
SETTING_CHANGED = {"workers": ("num_workers", "0", "2"), "aug_stronger": ("aug_noise", "0.05", "0.2"),
                   "config_lr": ("lr", "0.003", "0.001")}
# Recorded first: torch.compile's imports and tracing make it the slowest fork by far.
FORKS = ["compiled", *sorted(set(BENIGN) - {"compiled"}), *sorted(ROOT_CAUSE)]
# What a benign fork may still be told apart by: its source differs, and settings that did not matter.
BENIGN_CAUSES = {"code", "inert"}


def _pair(fork: str) -> Pair:
    return load_pair(f"fork-{fork.replace('_', '-')}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Run directory of the shared baseline ("base") and of each fork."""
    root = tmp_path_factory.mktemp("forks")
    # Alone: forks recorded in parallel would race to cache it.
    base = record_pair_side(_pair(FORKS[0]).baseline, root / "base", STEPS)
    # Two at a time: the CI machine has two cores and every side runs with OMP_NUM_THREADS=1.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {fork: pool.submit(record_pair_side, _pair(fork).candidate, root / fork, STEPS) for fork in FORKS}
        return {"base": base} | {fork: future.result() for fork, future in futures.items()}


@pytest.fixture(scope="module")
def comparisons(runs) -> dict[str, Comparison]:
    return {fork: session.compare(runs["base"], runs[fork], ignore_args=_pair(fork).ignore_args) for fork in FORKS}


def _root_modules(run: Path) -> set[str]:
    """Class names the capture took for the model, from the "Class:digest" entries of `batch`."""
    return {entry.partition(":")[0] for step in load_run(run).primary.steps for entry in step["batch"] or []}


@pytest.fixture
def trainer_data(monkeypatch):
    """The base trainer's data module, imported here and forgotten afterwards (no fork is imported:
    importing one patches the base package)."""
    monkeypatch.syspath_prepend(str(FORKS_DIR))
    yield importlib.import_module("trainer.data")
    for name in [m for m in sys.modules if m == "trainer" or m.startswith("trainer.")]:
        del sys.modules[name]


def test_table_supports_the_data_forks(trainer_data):
    """What the data forks rely on: a fixed table whose label names first appear in unsorted order."""
    text = trainer_data.make_csv()
    assert text == trainer_data.make_csv()
    rows = trainer_data.load_rows(text)
    labels = [row["label"] for row in rows]
    assert set(labels) == set(trainer_data.CLASS_NAMES)
    assert list(trainer_data.build_vocab(labels)) != list(dict.fromkeys(labels))
    train_rows, val_rows = trainer_data.split(rows, 0.2)
    assert (len(train_rows), len(val_rows)) == (480, 120) and train_rows[0] is rows[0]


def test_pairs_share_one_baseline():
    commands = {tuple(_pair(fork).baseline.command) for fork in FORKS}
    envs = {tuple(sorted(_pair(fork).baseline.env.items())) for fork in FORKS}
    assert len(commands) == 1 and len(envs) == 1, "the fixture records one baseline for all pairs"
    steps = {side.steps["cpu"] for fork in FORKS for side in (_pair(fork).baseline, _pair(fork).candidate)}
    assert steps == {STEPS}


@pytest.mark.parametrize("fork", FORKS)
def test_pair_file_expectations_hold(fork, comparisons):
    failures = session.gate_failures(_pair(fork), comparisons[fork])
    assert not failures, [(f.check, f.expected, f.actual, f.step, f.summary) for f in failures]


@pytest.mark.parametrize("fork", BENIGN)
def test_benign_fork_is_identical(fork, comparisons):
    c = comparisons[fork]
    assert c.verdict == schema.IDENTICAL and c.first_divergence is None, c.first_divergence
    # The fork's own source file always differs ("code"); any setting that differs (output paths, the
    # compile backend, config dicts found under other names) must be classed as unable to change training.
    assert [(x.category, x.summary) for x in c.causes if x.category not in BENIGN_CAUSES] == []


@pytest.mark.parametrize("fork", sorted(ROOT_CAUSE))
def test_harmful_fork_root_cause(fork, comparisons):
    c = comparisons[fork]
    assert c.verdict == schema.DIFFERENT
    assert c.causes, "training differs, so at least one cause must be ranked"
    assert c.causes[0].category == ROOT_CAUSE[fork], [(x.category, x.summary) for x in c.causes]


@pytest.mark.parametrize("fork", sorted(SETTING_CHANGED))
def test_root_cause_names_the_changed_setting(fork, comparisons):
    name, before, after = SETTING_CHANGED[fork]
    top = comparisons[fork].causes[0]
    # Named as a change (before -> after), not merely present in a config dict the evidence quotes whole.
    changed = rf"\b{name}\W+{re.escape(before)}\W+{re.escape(after)}\b"
    assert re.search(changed, f"{top.summary} {top.evidence!r}"), top


def test_compiled_model_is_captured(runs):
    trace = load_run(runs["compiled"]).primary
    assert "capture_error" not in trace.meta, trace.meta.get("capture_error")
    assert len(trace.steps) == STEPS
    assert all(step["batch"] for step in trace.steps), "a step of the compiled run has no model-input digest"


def test_forward_direct_root_is_the_model_not_a_submodule(runs):
    assert _root_modules(runs["base"]) == {MODEL_CLASS}
    assert _root_modules(runs["forward_direct"]) == {MODEL_CLASS}
