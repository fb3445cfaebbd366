"""The toy trainer family through the whole pipeline: each variant is caught by the right check, channel
and first step, and the awkward runs (killed, raising, NaN, nondeterministic, shorter) are handled."""

from __future__ import annotations

import subprocess
import sys

import pytest

from parity import session
from parity.pairs import load_pair
from parity.trace import schema
from parity.trace.reader import load_run

from conftest import REPO, TOY, record_toy_in_process

RUNS = REPO / "runs" / "pytest"  # shared with `pytest parity/`, so cached runs are reused

# variant -> (channel that diverges first, its first step)
DIFFERENT = {
    "warmup": ("lr", 0),
    "sched_before_opt": ("lr", 0),
    "no_zero_grad": ("grad_norm", 1),
    "clip_changed": ("grad_norm", 0),
    "beta2_in_code": ("params", 0),  # float32 rounding makes even the first Adam update depend on beta2
    "data_order": ("data", 0),
    "dropout_changed": ("model", 0),  # the Dropout rate is a module setting of the model
    "loss_sum": ("loss", 0),
}
IDENTICAL = ["logging", "non_blocking", "refactor_loss", "eval_pass"]


def _compare_pair(variant: str):
    pair = load_pair(f"toy-{variant.replace('_', '-')}")
    runs = session.run_pair(pair, runs_dir=RUNS)
    return session.compare(runs.baseline, runs.candidate, ignore_args=pair.ignore_args)


@pytest.mark.parametrize("variant", sorted(DIFFERENT))
def test_variant_first_divergence(variant):
    c = _compare_pair(variant)
    channel, step = DIFFERENT[variant]
    assert c.verdict == schema.DIFFERENT
    assert (c.first_divergence["channel"], c.first_divergence["step"]) == (channel, step), c.first_divergence


@pytest.mark.parametrize("variant", IDENTICAL)
def test_harmless_variant_is_identical(variant):
    c = _compare_pair(variant)
    assert c.verdict == schema.IDENTICAL and c.first_divergence is None


def test_eval_left_on_for_training_is_a_training_mode_finding():
    c = _compare_pair("eval_during_training")
    assert c.verdict == schema.DIFFERENT and c.causes[0].category == "mode"
    assert (c.first_divergence["channel"], c.first_divergence["step"]) == ("mode", 0)
    assert "eval mode during training" in c.first_divergence["diagnosis"]
    assert c.finding("step_order").status == schema.DIFFERENT  # not called an inert mode switch
    assert "ckpt" not in c.first_divergence["diagnosis"]


def test_diagnoses_name_the_cause():
    assert "loop order differs" in _compare_pair("sched_before_opt").first_divergence["diagnosis"]
    assert "clip threshold" in _compare_pair("clip_changed").first_divergence["diagnosis"]
    beta = _compare_pair("beta2_in_code")
    assert "betas" in beta.first_divergence["diagnosis"]
    assert any("betas" in ch["path"] for ch in beta.finding("config").evidence["changes"])
    order = _compare_pair("no_zero_grad").finding("step_order")
    assert "zero_grad" in order.evidence["baseline"] and "zero_grad" not in order.evidence["candidate"]


def _record(tmp_path, name: str, script: str, *args: str, seed: int = 0) -> subprocess.CompletedProcess:
    out = tmp_path / name
    return subprocess.run([sys.executable, "-m", "parity", "record", "--out", str(out), "--seed", str(seed), "--",
                           sys.executable, str(TOY / script), "--ckpt-dir", str(out / "ckpt"), *args],
                          capture_output=True, text=True, cwd=REPO)


def test_killed_run_leaves_readable_partial_trace(tmp_path):
    proc = _record(tmp_path, "killed", "variants/killed.py", "--steps", "40")
    assert proc.returncode == 2 and "partial trace kept" in proc.stderr
    trace = load_run(tmp_path / "killed").primary
    assert len(trace.steps) == 37 and not trace.complete and "incomplete" in trace.ended_how


def test_raising_run_is_marked(tmp_path):
    proc = _record(tmp_path, "raises", "variants/raises.py", "--steps", "20")
    assert proc.returncode == 2
    trace = load_run(tmp_path / "raises").primary
    assert len(trace.steps) == 12 and trace.end["status"] == schema.END_EXCEPTION and "RuntimeError" in trace.end["error"]


# What the checks make of awkward runs: recorded in this process (the launcher has tests of its own).
def test_shorter_candidate_and_nan_losses(tmp_path):
    record_toy_in_process(tmp_path / "base", "train.py", "--steps", "12")
    record_toy_in_process(tmp_path / "short", "train.py", "--steps", "8")
    record_toy_in_process(tmp_path / "nan", "variants/nan_loss.py", "--steps", "12")
    short = session.compare(tmp_path / "base", tmp_path / "short", ignore_args=frozenset({"ckpt_dir", "steps"}))
    assert short.verdict == schema.DIFFERENT and short.first_divergence["channel"] == "steps"
    assert short.finding("loss").status == schema.IDENTICAL  # the 8 common steps are bit-identical
    nan = session.compare(tmp_path / "base", tmp_path / "nan", ignore_args=frozenset({"ckpt_dir"}))
    loss = nan.finding("loss")
    assert loss.status == schema.DIFFERENT and loss.first_divergent_step == 5
    assert loss.evidence["nan_first"] == {"baseline": None, "candidate": 5}
    same_nan = session.compare(tmp_path / "nan", tmp_path / "nan")
    assert same_nan.finding("loss").status == schema.IDENTICAL


def test_nondeterministic_baseline_gets_a_noise_floor(tmp_path):
    names = ("nd1", "nd2", "nd3")
    for name in names:
        record_toy_in_process(tmp_path / name, "variants/nondeterministic.py", "--steps", "10")
    # The two runs furthest apart are the baseline and its repeat, so the third (the candidate) lies within
    # the measured floor by construction: which draw of the noise lands where is chance, the judgement is not.
    losses = {n: [float(s["losses"][0]["value"]) for s in load_run(tmp_path / n).primary.steps] for n in names}
    spread = {(a, b): max(abs(x - y) for x, y in zip(losses[a], losses[b])) for a in names for b in names if a < b}
    base, repeat = max(spread, key=spread.get)
    cand = next(n for n in names if n not in (base, repeat))
    ignore = frozenset({"ckpt_dir"})
    naive = session.compare(tmp_path / base, tmp_path / cand, ignore_args=ignore)
    assert naive.verdict == schema.DIFFERENT
    judged = session.compare(tmp_path / base, tmp_path / cand, baseline_repeat=tmp_path / repeat, ignore_args=ignore)
    assert judged.noise["deterministic"] is False and judged.noise["loss_max_rel"] > 0
    assert judged.verdict == schema.EQUIVALENT
    assert "noise floor" in judged.finding("loss").summary
