"""First-divergence localisation: earliest step, ties in causal order, and the one-line diagnosis."""

from __future__ import annotations

import itertools

import pytest

from parity.checks.base import Finding
from parity.checks.divergence import CHECK_CHANNEL, locate_first_divergence
from parity.trace import schema

CHECK_OF = {channel: check for check, channel in CHECK_CHANNEL.items()}
CAUSAL = ["model", "data", "mode", "loss", "grad_norm", "lr", "params", "optimizer_state"]


def _finding(check: str, step: int | None, status: str = schema.DIFFERENT, **evidence: object) -> Finding:
    return Finding(check, status, f"{check} summary", step, dict(evidence))


def _identical(check: str) -> Finding:
    return _finding(check, None, schema.IDENTICAL)


def test_causal_order_matches_the_schema() -> None:
    assert [c for c in schema.CHANNELS if c != "config"] == CAUSAL
    assert set(CHECK_OF) == set(CAUSAL)


def test_nothing_different_means_no_divergence() -> None:
    findings = [_identical(CHECK_OF[c]) for c in CAUSAL] + [_identical("step_order"), _identical("config")]
    assert locate_first_divergence(findings) is None


@pytest.mark.parametrize(("upstream", "downstream"), list(itertools.combinations(CAUSAL, 2)),
                         ids=lambda c: c)
def test_tie_at_one_step_goes_to_the_causally_earlier_channel(upstream: str, downstream: str) -> None:
    # Listed downstream first, so neither list order nor name order can produce the right answer.
    findings = [_finding(CHECK_OF[downstream], 4), _finding(CHECK_OF[upstream], 4)]
    assert locate_first_divergence(findings)["channel"] == upstream
    assert locate_first_divergence(findings)["step"] == 4


def test_full_tie_resolves_to_the_model() -> None:
    out = locate_first_divergence([_finding(CHECK_OF[c], 2) for c in reversed(CAUSAL)])
    assert (out["step"], out["channel"]) == (2, "model")


def test_earlier_step_beats_causal_order() -> None:
    findings = [_finding("data", 5), _finding("optimizer_state", 1), _finding("loss", 3)]
    assert locate_first_divergence(findings)["channel"] == "optimizer_state"
    assert locate_first_divergence(findings)["step"] == 1


@pytest.mark.parametrize("status", [schema.EQUIVALENT, schema.NOT_COMPARED, schema.IDENTICAL])
def test_only_different_findings_count(status: str) -> None:
    findings = [_finding("data", 0, status), _finding("params", 3)]
    assert locate_first_divergence(findings)["channel"] == "params"


def test_explanatory_checks_are_never_the_first_divergence() -> None:
    reordered = Finding("step_order", schema.DIFFERENT, "loop order", 0, {"baseline": [], "candidate": []},
                        affects_training=False)
    findings = [_finding("config", None), reordered, _finding("loss", 2)]
    assert locate_first_divergence(findings)["channel"] == "loss"


def test_length_mismatch_alone_is_a_steps_divergence() -> None:
    order = Finding("step_order", schema.DIFFERENT, "baseline has 5 steps, candidate 3", 3,
                    {"length_mismatch": True})
    out = locate_first_divergence([order, _identical("loss")])
    assert out["channel"] == "steps" and out["step"] == 3
    assert "different lengths" in out["diagnosis"] and "baseline has 5 steps, candidate 3" in out["diagnosis"]


def test_diagnosis_names_the_clip_threshold_when_clip_differs() -> None:
    grad = _finding("grad_norm", 2, clip={"step": 2, "baseline": {"max_norm": 1.0, "norm_type": 2.0},
                                          "candidate": {"max_norm": 0.5, "norm_type": 2.0}})
    out = locate_first_divergence([grad, _finding("params", 2)])
    assert out["channel"] == "grad_norm"
    assert "clip threshold differs (1.0 -> 0.5)" in out["diagnosis"]


def test_diagnosis_without_clip_difference_blames_the_backward_pass() -> None:
    out = locate_first_divergence([_finding("grad_norm", 2, norm={"step": 2})])
    assert "clip threshold" not in out["diagnosis"] and "backward pass" in out["diagnosis"]


def test_diagnosis_mentions_config_and_loop_order() -> None:
    config = Finding("config", schema.DIFFERENT, "1 setting", None,
                     {"changes": [{"path": "root['optimizers'][0]['betas'][1]", "baseline": 0.999, "candidate": 0.95}]},
                     affects_training=False)
    order = Finding("step_order", schema.DIFFERENT, "loop order", 1,
                    {"baseline": ["backward", "optimizer.step"], "candidate": ["optimizer.step", "backward"]},
                    affects_training=False)
    out = locate_first_divergence([config, order, _finding("params", 1)])
    assert "['optimizers'][0]['betas'][1]" in out["diagnosis"]
    assert "backward > optimizer.step vs optimizer.step > backward" in out["diagnosis"]


@pytest.mark.parametrize(("channel", "phrase"), [
    ("data", "batches differ"), ("loss", "different loss"), ("lr", "learning-rate schedule"),
    ("params", "optimizer update"), ("optimizer_state", "optimizer state differs"),
])
def test_each_channel_has_a_diagnosis(channel: str, phrase: str) -> None:
    out = locate_first_divergence([_finding(CHECK_OF[channel], 3)])
    assert phrase in out["diagnosis"] and "step 3" in out["diagnosis"]
