"""Capture on HF Trainer, TRL SFTTrainer and a plain accelerate loop, through the lazy framework shims.

Whole-trainer tests share their recordings through module-scoped fixtures (a few seconds each, 4 updates).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import parity
from parity import session
from parity.pairs import load_pair
from parity.trace import schema
from parity.trace.reader import load_run

from conftest import REPO, record_pair_side

FRAMEWORKS = REPO / "tests" / "frameworks"
STEPS = 4


def _steps(run: Path) -> list[dict]:
    return load_run(run).primary.steps


def _config_objects(run: Path) -> dict:
    return load_run(run).primary.meta[schema.META_CONFIG_OBJECTS]


# -- without a trainer ---------------------------------------------------------------------------
def test_capture_start_imports_no_framework(tmp_path):
    code = ("import sys; from parity.capture.runtime import start_capture; c = start_capture(sys.argv[1]); "
            "print(sorted(m for m in ('transformers', 'accelerate', 'trl', 'lightning') if m in sys.modules)); c.stop()")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_shim_installs_on_import_and_uninstalls(tmp_path):
    import accelerate.accelerator as acc

    before = acc.Accelerator.clip_grad_norm_
    with parity.record(tmp_path):
        assert acc.Accelerator.clip_grad_norm_ is not before  # already imported: installed at start
    assert acc.Accelerator.clip_grad_norm_ is before
    assert not any(type(f).__name__ == "ShimFinder" for f in sys.meta_path)


def test_two_step_clip_records_the_norm_before_clipping(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with parity.record(tmp_path):
        model(torch.randn(16, 8)).pow(2).mean().mul(100).backward()
        total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()], 2.0)
        torch.nn.utils.clip_grads_with_norm_(model.parameters(), 0.1, total)
        optimizer.step()
    (step,) = _steps(tmp_path)
    assert step["clip"] == {"max_norm": 0.1, "norm_type": 2.0}
    assert step["grad_norm"]["source"] == "clip_grad_norm_"
    assert step["grad_norm"]["value"] == pytest.approx(float(total)) and float(total) > 0.1
    assert schema.EV_CLIP in step["events"]


def _record_pairs(root: Path, base_pair: str, candidates: dict[str, str]) -> dict[str, Path]:
    """The framework pairs' shared baseline ("base") and the named pairs' candidates, recorded from the pair
    files through the cache `pytest parity/` uses for them (its gates record the same candidates)."""
    base = load_pair(base_pair).baseline
    assert base.budget("cpu", None) == STEPS
    runs = {"base": record_pair_side(base, root / "base", STEPS)}
    for name, pair in candidates.items():
        sides = load_pair(pair)
        assert sides.baseline.command == base.command, f"{pair} shares the baseline"
        runs[name] = record_pair_side(sides.candidate, root / name, STEPS)
    return runs


# -- HF Trainer ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_runs(tmp_path_factory) -> dict[str, Path]:
    return _record_pairs(tmp_path_factory.mktemp("hf"), "fw-hf-clip", {
        "clip": "fw-hf-clip", "no_accum": "fw-hf-accumulation", "logging": "fw-hf-logging"})


@pytest.mark.slow
def test_hf_one_step_per_update_with_every_micro_batch(hf_runs):
    steps = _steps(hf_runs["base"])
    assert len(steps) == STEPS
    for step in steps:
        assert len(step["losses"]) == 2  # gradient_accumulation_steps=2
        assert len(step[schema.F_LOADER]) == 2 and step[schema.F_EVENTS].count(schema.EV_DATA) == 2
        assert step["clip"]["max_norm"] == 1.0 and step["grad_norm"]["source"] == "clip_grad_norm_"
    # Pre-clip: a clipped update records a norm above the threshold (after clipping it would be <= 1).
    assert any(step["grad_norm"]["value"] > 1.0 for step in steps)


@pytest.mark.slow
def test_hf_training_arguments_are_the_config(hf_runs):
    args = _config_objects(hf_runs["base"])["transformers.Trainer.args"]
    assert args["gradient_accumulation_steps"] == 2 and args["max_grad_norm"] == 1.0
    finding = session.compare(hf_runs["base"], hf_runs["clip"]).finding("config")
    assert finding.status == schema.DIFFERENT and "max_grad_norm" in json.dumps(finding.evidence)


@pytest.mark.slow
def test_hf_clip_threshold_caught_in_grad_norm_at_step_0(hf_runs):
    comparison = session.compare(hf_runs["base"], hf_runs["clip"])
    assert comparison.verdict == schema.DIFFERENT
    assert comparison.first_divergence["step"] == 0 and comparison.first_divergence["channel"] == "grad_norm"
    assert comparison.finding("data").status == schema.IDENTICAL


@pytest.mark.slow
def test_hf_accumulation_same_data_other_loss(hf_runs):
    comparison = session.compare(hf_runs["base"], hf_runs["no_accum"])
    assert comparison.finding("data").status == schema.IDENTICAL
    assert comparison.finding("loss").status == schema.DIFFERENT
    assert comparison.first_divergence["step"] == 0 and comparison.first_divergence["channel"] == "loss"


@pytest.mark.slow
def test_hf_logging_and_saving_are_identical(hf_runs):
    assert session.compare(hf_runs["base"], hf_runs["logging"]).verdict == schema.IDENTICAL


# -- accelerate loop -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def acc_runs(tmp_path_factory) -> dict[str, Path]:
    return _record_pairs(tmp_path_factory.mktemp("accelerate"), "fw-accelerate-accumulation",
                         {"no_accum": "fw-accelerate-accumulation"})


@pytest.mark.slow
def test_accelerate_steps_clip_and_state(acc_runs):
    steps = _steps(acc_runs["base"])
    assert len(steps) == STEPS and all(len(s["losses"]) == 2 for s in steps)
    assert all(s["clip"]["max_norm"] == 0.5 and s["grad_norm"]["value"] > 0.5 for s in steps)
    state = _config_objects(acc_runs["base"])["accelerate.Accelerator"]
    assert state["gradient_accumulation_steps"] == 2 and state["num_processes"] == 1 and state["mixed_precision"] == "no"


@pytest.mark.slow
def test_accelerate_accumulation_same_data_other_loss(acc_runs):
    comparison = session.compare(acc_runs["base"], acc_runs["no_accum"])
    assert comparison.finding("data").status == schema.IDENTICAL
    assert comparison.finding("loss").status == schema.DIFFERENT


@pytest.mark.slow
def test_accelerate_overflow_step_is_skipped(tmp_path, monkeypatch):
    # In this process: what the accelerate shim records of a skipped update is the subject, not the launcher.
    monkeypatch.syspath_prepend(str(FRAMEWORKS))
    from accelerate_loop.train import main

    out = tmp_path / "run"
    with parity.record(out, seed=0):
        assert main(["--max-steps", "3", "--output-dir", str(out / "output"), "--loss-scaling"], inject_inf_at=1) == 0
    steps = _steps(out)
    assert [s["skipped"] for s in steps] == [False, True, False]
    assert schema.EV_OPT_STEP not in steps[1]["events"] and schema.EV_OPT_STEP in steps[2]["events"]


# -- TRL -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> Path:
    """An SFTTrainer run: fw-trl-logging's candidate (the base training, logging every update), which that
    pair's gate records too, through the same cache."""
    candidate = load_pair("fw-trl-logging").candidate
    assert candidate.budget("cpu", None) == STEPS
    return record_pair_side(candidate, tmp_path_factory.mktemp("trl") / "logging", STEPS)


@pytest.mark.slow
def test_trl_sft_config_and_steps(sft_run):
    steps = _steps(sft_run)
    assert len(steps) == STEPS and all(len(s["losses"]) == 2 for s in steps)
    args = _config_objects(sft_run)["transformers.Trainer.args"]
    assert args["max_length"] == 32 and args["warmup_steps"] == 1  # SFTConfig fields, through to_dict()
    assert all(s["clip"]["max_norm"] == 1.0 and s["grad_norm"]["source"] == "clip_grad_norm_" for s in steps)


@pytest.mark.slow
def test_trl_sft_batches_every_step(sft_run):
    """SFTTrainer checkpoints activations: the recomputed blocks raise inside their forward to stop early,
    and the forward depth must still come down (it once stuck at 1 and hid every later forward)."""
    assert all(len(s[schema.F_LOADER]) == 2 and schema.EV_FORWARD in s["events"] for s in _steps(sft_run))
