"""An optimizer or scheduler made before `parity.record` started is still described (at its first update
or step), once, so that a changed hard-coded setting (fused=True) is named by the config check rather
than missed."""

from __future__ import annotations

import json

import torch

import parity
from parity.checks.config import run_config
from parity.trace.reader import load_run


def _train(out, **adamw) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), **adamw)  # before capture starts
    with parity.record(out):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).square().mean().backward()
            opt.step()


def test_an_optimizer_made_before_capture_is_described_once(tmp_path) -> None:
    _train(tmp_path / "a", weight_decay=0.05)
    records = [json.loads(line) for line in (tmp_path / "a" / "trace-rank0.jsonl").read_text().splitlines()]
    described = [r["value"] for r in records if r.get("key") == "optimizers"]
    assert len(described) == 1 and len(described[0]) == 1
    assert described[0][0]["class"] == "torch.optim.adamw.AdamW" and described[0][0]["defaults"]["weight_decay"] == 0.05


def test_its_changed_setting_reaches_the_config(tmp_path) -> None:
    _train(tmp_path / "a", weight_decay=0.05)
    _train(tmp_path / "b", weight_decay=0.05, foreach=False)
    a, b = (run_config(load_run(tmp_path / side).traces[0]) for side in ("a", "b"))
    assert a["optimizers"][0]["foreach"] is None and b["optimizers"][0]["foreach"] is False


def test_a_scheduler_made_before_capture_is_described_at_its_first_step(tmp_path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    with parity.record(tmp_path / "a"):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).square().mean().backward()
            opt.step()
            sched.step()
    records = [json.loads(line) for line in (tmp_path / "a" / "trace-rank0.jsonl").read_text().splitlines()]
    described = [r["value"] for r in records if r.get("key") == "schedulers"]
    assert len(described) == 1 and len(described[0]) == 1
    entry = described[0][0]
    assert entry["class"] == "torch.optim.lr_scheduler.StepLR"
    assert entry["state"]["step_size"] == 2 and entry["state"]["last_epoch"] == 0  # the state it first stepped from


def test_a_loader_made_before_capture_is_described_at_its_first_epoch(tmp_path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4))
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, drop_last=True)
    with parity.record(tmp_path / "a"):
        for _ in range(2):  # two epochs: described once
            for (x,) in loader:
                opt.zero_grad()
                model(x).square().mean().backward()
                opt.step()
    records = [json.loads(line) for line in (tmp_path / "a" / "trace-rank0.jsonl").read_text().splitlines()]
    described = [r["value"] for r in records if r.get("key") == "dataloaders"]
    assert len(described) == 1 and len(described[0]) == 1
    assert described[0][0]["batch_size"] == 4 and described[0][0]["drop_last"] is True
