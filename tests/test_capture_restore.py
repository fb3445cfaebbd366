"""`parity.record(...)` inside a program that goes on after it: what capture switched on is put back."""

from __future__ import annotations

import os
import warnings

import torch

import parity


def _state() -> tuple:
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark, warnings.showwarning, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_deterministic_capture_puts_back_what_it_changed(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    before = _state()
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with parity.record(tmp_path / "run", deterministic=True):
        during = _state()
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
    assert during[:3] == (True, True, False) and during[4] == ":4096:8", "capture's deterministic mode was on"
    assert _state() == before
