"""Capture around a `torch.compile`d model: nothing of parity is traced, inputs and losses still recorded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import parity
from parity.trace import schema
from parity.trace.reader import load_run

STEPS = 3


def _record(path, how: str = "eager", backend: str = "eager"):
    """Three steps of a small model, run eagerly or compiled in one of the ways trainers compile."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.25), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    runner = {"eager": model, "wrapped": torch.compile(model, backend=backend),
              "function": torch.compile(lambda x: model(x), backend=backend), "method": model,
              "dataparallel": nn.DataParallel(model)}[how]
    g = torch.Generator().manual_seed(1)
    with parity.record(path, seed=0):
        if how == "method":  # in-place compile, under capture as in a `parity record` child process
            model.compile(backend=backend)
        for _ in range(STEPS):
            opt.zero_grad()
            x, y = torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)
            nn.functional.cross_entropy(runner(x), y).backward()
            opt.step()
    return load_run(path).primary


@pytest.fixture(scope="module")
def eager_trace(tmp_path_factory):
    return _record(tmp_path_factory.mktemp("eager") / "run")


@pytest.mark.parametrize("how, backend", [("wrapped", "eager"), ("wrapped", "aot_eager"), ("method", "aot_eager"),
                                          ("dataparallel", "eager")])  # DDP's wrapper holds the model the same way
def test_compiled_model_records_like_the_eager_one(tmp_path, eager_trace, how, backend):
    torch._dynamo.reset()
    trace = _record(tmp_path / "run", how, backend)
    assert "capture_error" not in trace.meta
    assert len(trace.steps) == STEPS
    for step, plain in zip(trace.steps, eager_trace.steps):
        assert step["events"] == plain["events"] == ["zero_grad", "forward", "backward", "optimizer.step"]
        # Digested at the OptimizedModule, outside the compiled region, named after the model inside.
        assert step["batch"] == plain["batch"] and step["batch"][0].startswith("Sequential:")
        assert step[schema.F_MODE] == plain[schema.F_MODE]
        assert [x["bits"] for x in step["losses"]] == [x["bits"] for x in plain["losses"]]
    assert trace.meta[schema.META_MODEL] == eager_trace.meta[schema.META_MODEL]


def test_compiled_function_calling_the_model_is_not_traced_into(tmp_path, eager_trace):
    """The model runs inside the compiled region: its hooks stay out of the graph (no capture_error,
    the backend's graph module is no forward of the trainer's), the losses are still recorded."""
    torch._dynamo.reset()
    trace = _record(tmp_path / "run", "function", "aot_eager")
    assert "capture_error" not in trace.meta
    assert [s["events"] for s in trace.steps] == [["zero_grad", "backward", "optimizer.step"]] * STEPS
    assert [s["losses"] for s in trace.steps] == [s["losses"] for s in eager_trace.steps]
