"""In-process capture: step attribution, what a step records, and that capture never changes results."""

from __future__ import annotations

import torch
import pytest

import parity
from parity.trace import schema
from parity.trace.reader import load_run


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _train(steps: int = 4, *, eval_every: int = 0, scaler: torch.amp.GradScaler | None = None) -> list[float]:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 2))
    g = torch.Generator().manual_seed(1)
    losses = []
    for step in range(steps):
        opt.zero_grad()
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
        sched.step()
        if eval_every and step % eval_every == 0:
            model.eval()
            with torch.no_grad():
                model(x)
            model.train()
        losses.append(loss.item())
    return losses


def test_record_attributes_events_to_steps(tmp_path):
    with parity.record(tmp_path / "run"):
        _train(3, eval_every=1)
    trace = load_run(tmp_path / "run").primary
    assert trace.complete and len(trace.steps) == 3
    assert trace.steps[0]["events"] == [
        "zero_grad", "forward", "backward", "clip_grad_norm", "optimizer.step", "scheduler.step",
        "eval()", "forward[no_grad]", "train()"]
    # The scheduler constructor's own initial step() is not an event of step 0.
    assert trace.steps[0]["events"].count("scheduler.step") == 1


def test_step_records_loss_lr_clip_and_digests(tmp_path):
    with parity.record(tmp_path / "run"):
        losses = _train(3)
    steps = load_run(tmp_path / "run").primary.steps
    assert [s["losses"][0]["value"] for s in steps] == pytest.approx(losses, rel=0, abs=0)
    assert [s["groups"][0]["lr"] for s in steps] == [5e-3, 1e-2, 1e-2]
    assert steps[0]["clip"] == {"max_norm": 0.5, "norm_type": 2.0}
    assert steps[0]["grad_norm"]["source"] == "clip_grad_norm_"
    for s in steps:
        assert s["params"] and s["optim_state"] and s["batch"] and set(s["rng"]) >= {"torch", "numpy", "python"}
        assert s["wall_ms"] >= 0 and s["peak_mem_bytes"] > 0
    assert len({s["params"] for s in steps}) == 3


def test_capture_does_not_change_training(tmp_path):
    plain = _train(5)
    with parity.record(tmp_path / "run"):
        recorded = _train(5)
    assert [float(x).hex() for x in plain] == [float(x).hex() for x in recorded]


def test_grad_scaler_records_unscaled_loss(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with parity.record(tmp_path / "run"):
        losses = _train(2, scaler=scaler)
    steps = load_run(tmp_path / "run").primary.steps
    assert steps[0]["losses"][0]["value"] == losses[0]
    assert steps[0]["losses"][0]["scale"]["value"] == 1024.0
    assert steps[0]["events"][:4] == ["zero_grad", "forward", "scaler.scale", "backward"]
    assert "scaler.update" in steps[0]["events"] and "scaler.step" in steps[0]["events"]


def test_grad_scaler_skipped_update_is_a_skipped_step(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    with parity.record(tmp_path / "run"):
        opt.zero_grad()
        loss = model(torch.full((2, 4), 1e30)).sum()  # inf gradients: the scaler skips the update
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    steps = load_run(tmp_path / "run").primary.steps
    assert len(steps) == 1 and steps[0]["skipped"] is True


@pytest.mark.parametrize("level,has_digest", [("full", [True, True, True]), ("every:2", [True, False, True]),
                                              ("minimal", [False, False, False])])
def test_capture_levels(tmp_path, level, has_digest):
    with parity.record(tmp_path / "run", level=level):
        _train(3)
    steps = load_run(tmp_path / "run").primary.steps
    assert [s["params"] is not None for s in steps] == has_digest
    assert all(s["losses"] and s["groups"] for s in steps)


def test_metadata_records_optimizer_scheduler_and_numerics(tmp_path):
    with parity.record(tmp_path / "run", seed=3):
        _train(1)
    trace = load_run(tmp_path / "run").primary
    opt = trace.meta["optimizers"][0]
    assert opt["class"] == "torch.optim.adamw.AdamW" and opt["defaults"]["betas"] == [0.9, 0.999]
    assert trace.meta["schedulers"][0]["class"].endswith("LambdaLR")
    assert trace.header["seed"] == 3 and trace.header["version"] == schema.SCHEMA_VERSION
    assert "deterministic_algorithms" in trace.header["meta"]["numerics"]


def test_exception_inside_record_marks_trace(tmp_path):
    with pytest.raises(RuntimeError):
        with parity.record(tmp_path / "run"):
            _train(2)
            raise RuntimeError("boom")
    trace = load_run(tmp_path / "run").primary
    assert len(trace.steps) == 2 and not trace.complete and "boom" in trace.ended_how


def test_no_optimizer_means_no_trace(tmp_path):
    with parity.record(tmp_path / "run"):
        torch.nn.Linear(2, 2)(torch.randn(1, 2))
    assert not list((tmp_path / "run").glob(schema.TRACE_GLOB))
