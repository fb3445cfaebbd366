"""compare_traces: every check on two traces, verdict aggregation, first divergence and the noise floor."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from parity.capture.digest import combine, float_bits
from parity.checks.base import Tolerance
from parity.checks.compare import CHECK_NAMES, NOISE_MARGIN, compare_traces
from parity.trace import schema
from parity.trace.reader import Trace

LOOP = [schema.EV_ZERO_GRAD, schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_CLIP, schema.EV_OPT_STEP,
        schema.EV_SCHED_STEP]
STEPS = 6


def _step(i: int) -> dict[str, Any]:
    return {"type": schema.STEP, "step": i, "events": list(LOOP),
            "losses": [float_bits(2.0 - 0.125 * i)],
            "groups": [{"lr": 0.1 / (i + 1), "betas": [0.9, 0.999]}],
            "grad_norm": {**float_bits(1.0 + 0.25 * i), "source": "clip_grad_norm_"},
            "clip": {"max_norm": 1.0, "norm_type": 2.0},
            "batch": [combine(["batch", i])], "params": combine(["params", i]),
            "optim_state": combine(["state", i]), "skipped": False,
            schema.F_MODE: {"root": "Net", "training": True, "eval_modules": [], "n_eval": 0}}


def _trace(name: str = "base", n: int = STEPS, args: dict | None = None) -> Trace:
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0,
              "seed": 0, "deterministic": True, "level": "full", "meta": {"argv": [name], "git": None}}
    meta = {"argparse": {"lr": 0.1, "out": name, "tag": name, **(args or {})},
            schema.META_MODEL: {"roots": [{"class": "net.Net", "modules": [["", "Net"], ["fc", "Linear"]],
                                           "params": [["fc.weight", [2, 4], "torch.float32", True]], "buffers": [],
                                           "n_params": 8, "n_trainable": 8}], "optimizer_only": []},
            "optimizers": [{"class": "torch.optim.sgd.SGD", "defaults": {"lr": 0.1, "momentum": 0.9}}]}
    return Trace(path=Path(f"{name}/trace-rank0.jsonl"), header=header, meta=meta,
                 steps=[_step(i) for i in range(n)], end={"type": schema.END, "status": schema.END_OK, "steps": n})


def _changed(trace: Trace, from_step: int, **edits: Callable[[int, dict], Any]) -> Trace:
    """Copy of `trace` with each field replaced by edit(i, step) from `from_step` on."""
    out = copy.deepcopy(trace)
    for step in out.steps[from_step:]:
        for field, edit in edits.items():
            step[field] = edit(step["step"], step)
    return out


def _loss_scaled(factor: float) -> Callable[[int, dict], Any]:
    return lambda i, s: [float_bits(s["losses"][0]["value"] * factor)]


def _new_params(tag: str) -> Callable[[int, dict], Any]:
    return lambda i, s: combine([tag, i])


def _statuses(c) -> dict[str, str]:
    return {f.name: f.status for f in c.findings}


# -- aggregation ------------------------------------------------------------------------------

def test_identical_runs() -> None:
    c = compare_traces(_trace(), _trace())
    assert c.verdict == schema.IDENTICAL
    assert set(_statuses(c).values()) == {schema.IDENTICAL}
    assert [f.name for f in c.findings] == list(CHECK_NAMES)
    assert c.first_divergence is None and c.noise is None


def test_config_difference_alone_is_not_a_divergence() -> None:
    c = compare_traces(_trace(), _trace(args={"log_every": 10}))
    assert _statuses(c)["config"] == schema.DIFFERENT
    assert c.verdict == schema.IDENTICAL and c.first_divergence is None


def test_ignore_args_is_passed_to_config() -> None:
    c = compare_traces(_trace("a"), _trace("b"), ignore_args=frozenset({"tag"}))
    assert _statuses(c)["config"] == schema.IDENTICAL
    assert _statuses(compare_traces(_trace("a"), _trace("b")))["config"] == schema.DIFFERENT


def test_output_paths_are_listed_but_do_not_make_config_different() -> None:
    c = compare_traces(_trace("a", args={"tag": "x"}), _trace("b", args={"tag": "x"}))
    config = c.finding("config")
    assert config.status == schema.IDENTICAL
    assert [p["path"] for p in config.evidence["paths"]] == ["root['argparse']['out']"]
    assert "1 path setting(s) differ" in config.summary
    assert [cause.category for cause in c.causes] == ["inert"]


def test_reordering_alone_does_not_make_the_verdict_different() -> None:
    reordered = [schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_ZERO_GRAD, schema.EV_CLIP, schema.EV_OPT_STEP,
                 schema.EV_SCHED_STEP]
    c = compare_traces(_trace(), _changed(_trace(), 2, events=lambda i, s: list(reordered)))
    assert _statuses(c)["step_order"] == schema.DIFFERENT
    assert c.verdict == schema.IDENTICAL and c.first_divergence is None


def test_inert_events_alone_are_identical_overall() -> None:
    c = compare_traces(_trace(), _changed(_trace(), 3, events=lambda i, s: s["events"] + [schema.EV_SAVE]))
    assert _statuses(c)["step_order"] == schema.EQUIVALENT
    assert c.verdict == schema.IDENTICAL


def test_length_mismatch_makes_the_verdict_different() -> None:
    short = _trace(n=4)
    short.end = None  # killed
    c = compare_traces(_trace(), short)
    assert c.verdict == schema.DIFFERENT
    assert c.first_divergence["channel"] == "steps" and c.first_divergence["step"] == 4
    assert c.sides["candidate"]["steps"] == 4 and "incomplete" in c.sides["candidate"]["ended"]


def test_planted_loss_difference_is_different_and_located() -> None:
    cand = _changed(_trace(), 3, losses=_loss_scaled(1.001), params=_new_params("p2"), optim_state=_new_params("s2"))
    c = compare_traces(_trace(), cand)
    assert c.verdict == schema.DIFFERENT
    assert c.first_divergence["step"] == 3 and c.first_divergence["channel"] == "loss"
    assert c.finding("params").first_divergent_step == 3


def test_tolerance_makes_the_verdict_equivalent() -> None:
    cand = _changed(_trace(), 1, losses=_loss_scaled(1 + 1e-9))
    assert compare_traces(_trace(), cand).verdict == schema.DIFFERENT
    c = compare_traces(_trace(), cand, tolerance=Tolerance(rel=1e-6))
    assert _statuses(c)["loss"] == schema.EQUIVALENT and c.verdict == schema.EQUIVALENT
    assert c.first_divergence is None


def test_clip_change_is_located_at_grad_norm_with_the_threshold_in_the_diagnosis() -> None:
    cand = _changed(_trace(), 2, clip=lambda i, s: {"max_norm": 0.5, "norm_type": 2.0}, params=_new_params("p2"),
                    optim_state=_new_params("s2"))
    c = compare_traces(_trace(), cand)
    assert c.first_divergence["channel"] == "grad_norm" and c.first_divergence["step"] == 2
    assert "clip threshold differs (1.0 -> 0.5)" in c.first_divergence["diagnosis"]


def test_some_channels_not_compared_do_not_hide_a_difference() -> None:
    def minimal(t: Trace) -> Trace:
        return _changed(t, 0, batch=lambda i, s: [], params=lambda i, s: None, optim_state=lambda i, s: None,
                        grad_norm=lambda i, s: None, clip=lambda i, s: None)
    c = compare_traces(minimal(_trace()), minimal(_changed(_trace(), 4, losses=_loss_scaled(2.0))))
    assert _statuses(c)["params"] == schema.NOT_COMPARED
    assert c.verdict == schema.DIFFERENT


def test_nothing_comparable_is_not_compared() -> None:
    def events_only(t: Trace) -> Trace:
        t.steps = [{"type": schema.STEP, "step": s["step"], "events": s["events"]} for s in t.steps]
        return t
    c = compare_traces(events_only(_trace()), events_only(_trace()))
    assert {_statuses(c)[n] for n in ("data", "loss", "grad_norm", "lr_schedule", "params", "optimizer_state")} \
        == {schema.NOT_COMPARED}
    assert c.verdict == schema.NOT_COMPARED


# -- noise floor ------------------------------------------------------------------------------

def _noisy(factor: float, tag: str) -> Trace:
    """The baseline with loss scaled by `factor` and different parameters from step 2 on."""
    return _changed(_trace(), 2, losses=_loss_scaled(factor), params=_new_params(tag), optim_state=_new_params(tag))


def test_candidate_within_the_noise_floor_is_equivalent() -> None:
    c = compare_traces(_trace(), _noisy(1 - 1e-7, "cand"), baseline_repeat=_noisy(1 + 1e-7, "repeat"))
    assert c.noise["deterministic"] is False
    assert c.noise["loss_max_rel"] == pytest.approx(1e-7, rel=1e-3)
    assert c.noise["channels"]["loss"] == 2
    loss = c.finding("loss")
    assert loss.status == schema.EQUIVALENT
    assert loss.evidence["noise_floor"]["baseline_self_first_step"] == 2
    assert loss.evidence["noise_floor"]["candidate_loss_max_rel"] == pytest.approx(1e-7, rel=1e-3)
    assert "noise floor" in loss.summary
    assert c.finding("params").status == schema.EQUIVALENT and "noise_floor" in c.finding("params").evidence
    assert c.verdict == schema.EQUIVALENT and c.first_divergence is None


def test_candidate_beyond_the_noise_floor_stays_different() -> None:
    c = compare_traces(_trace(), _noisy(1 + 1e-3, "cand"), baseline_repeat=_noisy(1 + 1e-7, "repeat"))
    assert 1e-3 > NOISE_MARGIN * c.noise["loss_max_rel"]
    assert c.finding("loss").status == schema.DIFFERENT and "noise_floor" not in c.finding("loss").evidence
    assert c.finding("params").status == schema.DIFFERENT
    assert c.verdict == schema.DIFFERENT and c.first_divergence["channel"] == "loss"


def test_deterministic_baseline_gives_no_noise_allowance() -> None:
    c = compare_traces(_trace(), _noisy(1 + 1e-7, "cand"), baseline_repeat=_trace())
    assert c.noise["deterministic"] is True
    assert c.verdict == schema.DIFFERENT and "noise_floor" not in c.finding("loss").evidence


def test_noise_floor_never_excuses_a_length_mismatch() -> None:
    short_repeat = _noisy(1 + 1e-7, "repeat")
    short_repeat.steps = short_repeat.steps[:4]
    short_cand = _noisy(1 + 1e-7, "cand")
    short_cand.steps = short_cand.steps[:4]
    c = compare_traces(_trace(), short_cand, baseline_repeat=short_repeat)
    assert c.finding("step_order").status == schema.DIFFERENT
    assert c.verdict == schema.DIFFERENT


def test_noise_floor_does_not_excuse_a_channel_the_baseline_reproduces() -> None:
    repeat = _changed(_trace(), 2, losses=_loss_scaled(1 + 1e-7))  # params reproduce exactly
    cand = _noisy(1 - 1e-7, "cand")
    c = compare_traces(_trace(), cand, baseline_repeat=repeat)
    assert c.finding("loss").status == schema.EQUIVALENT
    assert c.finding("params").status == schema.DIFFERENT
    assert c.verdict == schema.DIFFERENT and c.first_divergence["channel"] == "params"


# -- JSON -------------------------------------------------------------------------------------

def test_to_json_has_every_check_and_survives_strict_json() -> None:
    from parity.report.render import to_json_text
    cand = _changed(_trace(), 1, losses=lambda i, s: [float_bits(float("nan"))])
    data = compare_traces(_trace(), cand).to_json()
    assert [c["name"] for c in data["checks"]] == list(CHECK_NAMES)
    assert data["verdict"] == schema.DIFFERENT
    text = to_json_text(data)
    parsed = json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} in JSON"))
    loss = next(c for c in parsed["checks"] if c["name"] == "loss")
    assert loss["evidence"]["max_rel"] == "inf"
