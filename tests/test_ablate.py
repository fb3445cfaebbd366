"""`parity ablate` on the toy family: each change is attributed to the right channel, and the runs are cached.

The ablation's twelve toy runs are recorded in this process (the same record plan launches its runs in
parallel in test_attribute's two-argument attribution), into runs of this module's own: the toy-ablate gate
records its candidate through `parity record` itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from parity.ablate import ablate, load_toggles
from parity.exceptions import ConfigError
from parity.pairs import load_pair
from parity.trace import schema

from conftest import REPO, toy_commands_recorded_in_process

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("ablate")


@pytest.fixture(scope="module")
def toy_ablation(runs):
    with toy_commands_recorded_in_process():
        return ablate(load_pair("toy-ablate"), runs_dir=runs, jobs=1, progress=False)


def test_each_change_is_attributed(toy_ablation):
    by_name = {t.toggle.name: t for t in toy_ablation.toggles}
    assert by_name["log_every"].applied.verdict == schema.IDENTICAL
    assert by_name["log_every"].reverted.verdict == schema.IDENTICAL
    expected = {"warmup": "lr", "clip": "grad_norm", "dropout": "model"}  # the Dropout rate is a module setting of the model
    for name, channel in expected.items():
        applied = by_name[name].applied
        assert applied.verdict == schema.DIFFERENT and applied.first_divergence["channel"] == channel, (name, applied.first_divergence)
        assert applied.first_divergence["step"] == 0
        assert by_name[name].reverted.verdict == schema.DIFFERENT
    assert toy_ablation.noise_floor == 0.0  # the toy trainer is deterministic with itself
    assert by_name["warmup"].applied_effect is not None


def test_second_ablation_reuses_cached_runs(toy_ablation, runs):
    proc = subprocess.run([sys.executable, "-m", "parity", "ablate", "--pair", "toy-ablate", "--runs-dir", str(runs),
                           "--format", "json"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1  # some single changes alter training
    assert proc.stderr.count("reusing cached") == 2 + 2 * len(toy_ablation.toggles) + 2  # + both repeats
    data = json.loads(proc.stdout)
    assert [t["name"] for t in data["toggles"]] == ["warmup", "clip", "dropout", "log_every"]


def test_pair_without_toggles_is_rejected():
    with pytest.raises(ConfigError, match="no \\[\\[toggle\\]\\] tables"):
        load_toggles(load_pair("toy-warmup"))
