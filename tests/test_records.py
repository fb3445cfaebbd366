"""Typed trace accessors (parity.trace.records) on a recorded run and on synthetic records, the schema's
step fields against what the recorder writes, and per-check tolerances for grad_norm and lr_schedule."""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest
import torch

import parity
from parity.checks.base import Tolerance
from parity.checks.compare import TOLERANT_CHECKS, compare_traces
from parity.checks.grad_norm import check_grad_norm
from parity.checks.lr_schedule import check_lr_schedule
from parity.exceptions import ConfigError
from parity.trace import schema
from parity.trace.reader import Trace, load_run
from parity.trace.records import (Clip, LabelCounts, RecordedFloat, StepView, TraceMeta, TrainingMode, float64_ulps,
                                  step_views, ulp_distance)

STEPS, BATCH, CLIP = 3, 4, 0.5


def _f32(x: float) -> dict:
    """A float32 scalar as the recorder writes it."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return {"bits": f"{bits:08x}", "dtype": "float32", "value": struct.unpack("<f", struct.pack("<I", bits))[0]}


def _trace(steps: list[dict], meta: dict | None = None) -> Trace:
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header, meta=meta or {},
                 steps=[{"type": schema.STEP, "step": i, "events": [], **s} for i, s in enumerate(steps)])


def _norms(*values: float) -> Trace:
    return _trace([{schema.F_GRAD_NORM: {**_f32(v), "source": "clip_grad_norm_"}} for v in values])


def _lrs(*values: float) -> Trace:
    return _trace([{schema.F_GROUPS: [{"lr": v, "weight_decay": 0.01}]} for v in values])


def _train() -> tuple[list[float], list[float]]:
    """A tiny DataLoader-driven AdamW run with clipping and a warm-up schedule: (losses, lrs used)."""
    args = argparse.ArgumentParser()
    args.add_argument("--steps", type=int, default=STEPS)
    steps = args.parse_args([]).steps
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 3))
    data = torch.utils.data.TensorDataset(torch.randn(steps * BATCH, 4), torch.arange(steps * BATCH) % 3)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / steps)
    losses, lrs = [], []
    for x, y in loader:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses, lrs


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[float], list[float]]:
    out = tmp_path_factory.mktemp("records") / "run"
    with parity.record(out, seed=0):
        losses, lrs = _train()
    return out, losses, lrs


# -- the schema against the recorder ---------------------------------------------------------------

def test_step_fields_are_the_keys_the_recorder_writes(recorded) -> None:
    run, _, _ = recorded
    lines = [json.loads(line) for line in (run / "trace-rank0.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r[schema.F_TYPE] == schema.STEP]
    assert len(steps) == STEPS
    for record in steps:
        assert set(record) == set(schema.STEP_FIELDS)
    assert len(set(schema.STEP_FIELDS)) == len(schema.STEP_FIELDS)
    metas = {r[schema.M_KEY] for r in lines if r[schema.F_TYPE] == schema.META}
    assert metas <= set(schema.META_KEYS), metas - set(schema.META_KEYS)


# -- StepView on a recorded run --------------------------------------------------------------------

def test_step_view_reads_every_field_of_a_recorded_run(recorded) -> None:
    run, losses, lrs = recorded
    trace = load_run(run).primary
    views = step_views(trace)
    assert [v.index for v in views] == list(range(STEPS))
    for view, loss, lr in zip(views, losses, lrs):
        assert schema.EV_OPT_STEP in view.events and schema.EV_CLIP in view.events
        assert len(view.losses) == 1 and view.first_loss == view.losses[0]
        assert view.first_loss.as_float() == pytest.approx(loss, rel=1e-6) and view.first_loss.dtype == "float32"
        assert view.first_loss.scale is None and not view.first_loss.is_nan
        assert view.grad_norm.source == "clip_grad_norm_" and view.grad_norm.as_float() > 0
        assert view.clip == Clip(max_norm=CLIP, norm_type=2.0)
        assert view.lr == lr and view.lrs == [lr]
        assert all(schema.G_LR not in g and "weight_decay" in g for g in view.hyperparameters)
        assert view.groups[0][schema.G_LR] == lr
        assert len(view.batch) == 1 and ":" in view.batch[0]
        assert len(view.loader) == 1 and isinstance(view.loader[0], str)
        assert isinstance(view.params, str) and isinstance(view.optim_state, str)
        assert set(view.rng) >= {"torch", "numpy", "python"}
        assert set(view.fields[0]) == {"0", "1"}
        assert isinstance(view.samples, str) and len(view.samples) == 16
        assert isinstance(view.labels, LabelCounts) and view.labels.field == "1"
        assert sum(view.labels.hist.values()) == BATCH
        assert view.epoch == 0
        assert view.mode == TrainingMode(root=view.mode.root, training=True, eval_modules=(), n_eval=0)
        assert "Sequential" in view.mode.root
        assert view.skipped is False
        assert view.wall_ms > 0 and view.peak_mem_bytes > 0


def test_trace_meta_reads_a_recorded_run(recorded) -> None:
    run, _, _ = recorded
    trace = load_run(run).primary
    meta = TraceMeta.of(trace)
    assert meta.argparse == {"steps": STEPS}
    (opt,) = meta.optimizers
    assert opt.class_name.endswith("AdamW") and opt.defaults["lr"] == 1e-2 and opt.param_groups == 1
    assert opt.params == sum(p.numel() for p in torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)).parameters())
    (sched,) = meta.schedulers
    assert sched.class_name.endswith("LambdaLR") and sched.to_json()[schema.OPT_CLASS] == sched.class_name
    assert meta.model[schema.MODEL_ROOTS][0][schema.ROOT_N_PARAMS] == opt.params
    (loader,) = meta.dataloaders
    assert loader["batch_size"] == BATCH and loader[schema.DL_DATASET][schema.DS_LEN] == STEPS * BATCH
    assert isinstance(meta.config_objects, dict)
    assert meta.sources is None or isinstance(meta.sources[schema.SRC_FILES], dict)
    assert set(meta.rng_at_first_batch) >= {"torch", "numpy", "python"}
    assert isinstance(meta.numerics_at_end, dict) and meta.nondeterministic_ops == []
    assert meta.skipped_calls == [] and meta.capture_error is None
    # header and end
    assert meta.rank == 0 and meta.seed == 0 and meta.deterministic is False and meta.level == "full"
    assert meta.skip_loads == [] and isinstance(meta.digest, str)
    assert meta.argv == meta.run[schema.RUN_ARGV] and isinstance(meta.numerics, dict) and isinstance(meta.env, dict)
    assert meta.device == "cpu" and meta.cpus and meta.end_status == schema.END_OK
    assert meta.load_at_start is None or len(meta.load_at_start) == 3
    assert meta.commit is None or (len(meta.commit) == 40 and isinstance(meta.dirty, bool))


# -- synthetic records -----------------------------------------------------------------------------

def test_step_view_of_a_minimal_record_reads_not_recorded() -> None:
    view = StepView({schema.F_STEP: 7})
    assert view.index == 7 and view.events == [] and view.losses == [] and view.first_loss is None
    assert view.grad_norm is None and view.clip is None and view.groups == [] and view.lrs == [] and view.lr is None
    assert view.hyperparameters == [] and view.batch is None and view.loader is None and view.params is None
    assert view.optim_state is None and view.rng is None and view.fields is None and view.samples is None
    assert view.labels is None and view.epoch is None and view.mode is None and view.skipped is False
    assert view.wall_ms is None and view.peak_mem_bytes is None
    assert repr(view) == "StepView(step=7)"


def test_recorded_float_with_scale_nan_and_ulps() -> None:
    loss = RecordedFloat.from_record({**_f32(2.0), "scale": _f32(65536.0)})
    assert loss.as_float() == 2.0 and loss.scale.as_float() == 65536.0 and loss.source is None
    one_up = RecordedFloat.from_record({**_f32(2.0), "bits": f"{int(_f32(2.0)['bits'], 16) + 1:08x}"})
    assert loss.ulps_to(one_up) == 1 and not loss.same_bits(one_up) and loss.same_bits(loss)
    nan = RecordedFloat.from_record({"bits": "7fc00000", "dtype": "float32", "value": schema.V_NAN})
    assert nan.is_nan and loss.ulps_to(nan) is None and nan.as_float() != nan.as_float()
    assert RecordedFloat.from_record({"bits": "7f800000", "dtype": "float32", "value": schema.V_INF}).as_float() == float("inf")
    assert RecordedFloat.from_record(None) is None
    assert ulp_distance(_f32(1.0), {**_f32(1.0), "dtype": "bfloat16"}) is None
    assert ulp_distance(_f32(1e-45), _f32(-1e-45)) == 2  # across zero, as the floats order


def test_float64_ulps() -> None:
    x = 0.001
    assert float64_ulps(x, x) == 0
    next_up = struct.unpack("<d", struct.pack("<Q", struct.unpack("<Q", struct.pack("<d", x))[0] + 3))[0]
    assert float64_ulps(x, next_up) == 3 and float64_ulps(next_up, x) == 3
    assert float64_ulps(float("nan"), 1.0) is None


def test_small_records() -> None:
    assert Clip.from_record({schema.CLIP_MAX_NORM: 1, schema.CLIP_NORM_TYPE: None}) == Clip(1.0, None)
    mode = TrainingMode.from_record({"root": "M", "training": False, "eval_modules": ["a", "b"], "n_eval": 2})
    assert mode == TrainingMode("M", False, ("a", "b"), 2) and TrainingMode.from_record("x") is None
    labels = LabelCounts.from_record({"field": "label", "hist": {"0": 3, "2": 1}})
    assert labels == LabelCounts("label", {"0": 3, "2": 1})
    assert LabelCounts.from_record({"field": "", "hist": {}}) is None and LabelCounts.from_record(None) is None


def test_trace_meta_of_an_empty_trace() -> None:
    meta = TraceMeta({}, {}, None)
    assert meta.argparse == {} and meta.optimizers == [] and meta.schedulers == [] and meta.model is None
    assert meta.dataloaders == [] and meta.config_objects == {} and meta.sources is None
    assert meta.rng_at_first_batch is None and meta.run == {} and meta.git == {} and meta.commit is None
    assert meta.dirty is False and meta.numerics == {} and meta.cpus is None and meta.load_at_end is None
    assert meta.end_status is None and meta.rank == 0 and meta.skip_loads == []


def test_trace_meta_ignores_malformed_v2_meta() -> None:
    meta = TraceMeta({}, {schema.META_DATALOADERS: [{"batch_size": 2}, "junk"], schema.META_SOURCES: {"files": None},
                          schema.META_MODEL: [], schema.META_CONFIG_OBJECTS: None})
    assert meta.dataloaders == [{"batch_size": 2}] and meta.sources is None and meta.model is None
    assert meta.config_objects == {}


# -- per-check tolerances ------------------------------------------------------------------------------

def test_grad_norm_within_tolerance_is_equivalent() -> None:
    a, b = _norms(3.0, 2.0, 1.0), _norms(3.0, 2.0000002, 1.0000001)
    f = check_grad_norm(a, b, Tolerance(rel=1e-6))
    assert f.status == schema.EQUIVALENT and f.first_divergent_step == 1
    assert f.evidence["tolerance"] == "rel<=1e-06" and 0 < f.evidence["max_rel"] <= 1e-6
    assert f.evidence["max_ulps"] == 1
    assert check_grad_norm(a, b, Tolerance(ulps=1)).status == schema.EQUIVALENT


def test_grad_norm_beyond_tolerance_is_different() -> None:
    f = check_grad_norm(_norms(3.0, 2.0), _norms(3.0, 2.1), Tolerance(rel=1e-6))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 1
    assert f.evidence["max_rel"] == pytest.approx(0.1 / 2.1, rel=1e-6) and "beyond rel<=1e-06" in f.summary


def test_grad_norm_zero_tolerance_is_exact() -> None:
    a, b = _norms(3.0, 2.0), _norms(3.0, 2.0000002)
    assert check_grad_norm(a, b, Tolerance()).status == schema.DIFFERENT
    assert check_grad_norm(a, b, Tolerance(rel=0.0, ulps=0)).evidence["tolerance"] == "exact bits"
    assert check_grad_norm(a, a, Tolerance(rel=0.5)).status == schema.IDENTICAL


def test_grad_norm_tolerance_never_covers_a_clip_change() -> None:
    a, b = _norms(3.0, 2.0), _norms(3.0, 2.0000002)
    for step in b.steps:
        step[schema.F_CLIP] = {schema.CLIP_MAX_NORM: 0.5, schema.CLIP_NORM_TYPE: 2.0}
    assert check_grad_norm(a, b, Tolerance(rel=0.1)).status == schema.DIFFERENT


def test_lr_within_tolerance_is_equivalent() -> None:
    f = check_lr_schedule(_lrs(1e-3, 2e-3), _lrs(1e-3, 2e-3 * (1 + 1e-9)), Tolerance(rel=1e-6))
    assert f.status == schema.EQUIVALENT and f.first_divergent_step == 1
    assert f.evidence["tolerance"] == "rel<=1e-06" and 0 < f.evidence["max_rel"] <= 1e-6 and f.evidence["max_ulps"] > 0
    assert "within rel<=1e-06" in f.summary


def test_lr_ulp_tolerance_counts_float64_ulps() -> None:
    x = 2e-3
    up = struct.unpack("<d", struct.pack("<Q", struct.unpack("<Q", struct.pack("<d", x))[0] + 2))[0]
    assert check_lr_schedule(_lrs(x), _lrs(up), Tolerance(ulps=2)).status == schema.EQUIVALENT
    assert check_lr_schedule(_lrs(x), _lrs(up), Tolerance(ulps=1)).status == schema.DIFFERENT


def test_lr_beyond_or_zero_tolerance_is_different() -> None:
    a, b = _lrs(1e-3, 2e-3), _lrs(1e-3, 2.1e-3)
    f = check_lr_schedule(a, b, Tolerance(rel=1e-6))
    assert f.status == schema.DIFFERENT and f.evidence["max_rel"] == pytest.approx(0.1 / 2.1)
    tiny = _lrs(1e-3, 2e-3 * (1 + 1e-12))
    assert check_lr_schedule(a, tiny, Tolerance()).status == schema.DIFFERENT
    assert check_lr_schedule(a, a, Tolerance(rel=0.5)).status == schema.IDENTICAL


def test_lr_tolerance_never_covers_a_group_added() -> None:
    a = _lrs(1e-3)
    b = _trace([{schema.F_GROUPS: [{"lr": 1e-3}, {"lr": 1e-3}]}])
    assert check_lr_schedule(a, b, Tolerance(rel=0.5)).status == schema.DIFFERENT


def test_compare_traces_takes_a_tolerance_per_check() -> None:
    a = _trace([{schema.F_GRAD_NORM: {**_f32(2.0), "source": "parity"}, schema.F_GROUPS: [{"lr": 1e-3}]}])
    b = _trace([{schema.F_GRAD_NORM: {**_f32(2.0000002), "source": "parity"}, schema.F_GROUPS: [{"lr": 1e-3 * (1 + 1e-9)}]}])
    exact = compare_traces(a, b)
    assert exact.finding("grad_norm").status == schema.DIFFERENT and exact.finding("lr_schedule").status == schema.DIFFERENT
    loose = compare_traces(a, b, tolerances={"grad_norm": Tolerance(ulps=1), "lr_schedule": Tolerance(rel=1e-6)})
    assert loose.finding("grad_norm").status == schema.EQUIVALENT
    assert loose.finding("lr_schedule").status == schema.EQUIVALENT
    assert loose.verdict == schema.EQUIVALENT
    assert set(TOLERANT_CHECKS) == {"loss", "grad_norm", "lr_schedule"}


def test_compare_traces_loss_tolerance_both_ways() -> None:
    a = _trace([{schema.F_LOSSES: [_f32(1.0)]}])
    b = _trace([{schema.F_LOSSES: [_f32(1.0000001)]}])
    assert compare_traces(a, b).finding("loss").status == schema.DIFFERENT
    assert compare_traces(a, b, tolerance=Tolerance(ulps=1)).finding("loss").status == schema.EQUIVALENT
    assert compare_traces(a, b, tolerances={"loss": Tolerance(ulps=1)}).finding("loss").status == schema.EQUIVALENT
    # The mapping's entry wins over the legacy argument.
    assert compare_traces(a, b, tolerance=Tolerance(ulps=1),
                          tolerances={"loss": Tolerance()}).finding("loss").status == schema.DIFFERENT


@pytest.mark.parametrize("tolerances, message", [
    ({"params": Tolerance(rel=1e-3)}, "only loss, grad_norm, lr_schedule accept a tolerance"),
    ({"lr": Tolerance(rel=1e-3)}, "tolerance for 'lr'"),
    ({"grad_norm": 1e-5}, "expected a Tolerance, got float"),
])
def test_compare_traces_rejects_a_bad_tolerance_mapping(tolerances, message) -> None:
    a = _norms(1.0)
    with pytest.raises(ConfigError, match=message):
        compare_traces(a, a, tolerances=tolerances)
