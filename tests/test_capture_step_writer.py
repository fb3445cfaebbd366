"""The GPU-only paths of the recorder (steps held and written at the next update, the default, or finished
on the step writer's thread), exercised on the CPU: a trace recorded through either equals one recorded
without, in order, with no capture error."""

from __future__ import annotations

import json

import pytest
import torch

import parity
from parity.capture import recorder


def _train(out) -> list[dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters())
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    with parity.record(out):
        for x, y in torch.utils.data.DataLoader(data, batch_size=8):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    return [json.loads(line) for line in (out / "trace-rank0.jsonl").read_text().splitlines()]


def _steps(records: list[dict]) -> list[dict]:
    volatile = ("wall_ms", "peak_mem_bytes")
    return [{k: v for k, v in r.items() if k not in volatile} for r in records if r["type"] == "step"]


def test_steps_finished_on_the_step_writer_thread_are_the_same_and_in_order(tmp_path, monkeypatch) -> None:
    plain = _train(tmp_path / "plain")
    monkeypatch.setenv("PARITY_STEP_WRITER", "thread")
    monkeypatch.setattr(recorder.digest.Transfer, "on_host", property(lambda self: False))
    threaded = _train(tmp_path / "threaded")
    assert not [r for r in threaded if r.get("key") == "capture_error"]
    assert _steps(threaded) == _steps(plain)
    assert [r["type"] for r in threaded][-1] == "end"


def _train_clip_after_update(out) -> list[dict]:
    """A loop that clips after the update: the step's gradient norm is replaced once the copy has started."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with parity.record(out):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4)).square().mean().backward()
            opt.step()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5, norm_type=1.0)  # not the L2 norm parity took
    return [json.loads(line) for line in (out / "trace-rank0.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("writer", ["update", "thread"])
@pytest.mark.parametrize("train", [_train, _train_clip_after_update])
def test_a_copy_launched_at_the_update_gives_the_same_steps(tmp_path, monkeypatch, train, writer) -> None:
    plain = train(tmp_path / "plain")
    monkeypatch.setenv("PARITY_STEP_WRITER", writer)
    launched = []
    monkeypatch.setattr(recorder, "_copy_at_update", lambda: True)
    monkeypatch.setattr(recorder.digest.Transfer, "on_host", property(lambda self: False))
    original = recorder.Recorder._launch_early
    monkeypatch.setattr(recorder.Recorder, "_launch_early", lambda self: (launched.append(1), original(self))[1])
    early = train(tmp_path / "early")
    assert launched  # the GPU path ran, and a step changed after it (the clip) still records its new norm
    assert not [r for r in early if r.get("key") == "capture_error"]
    assert _steps(early) == _steps(plain)


def test_steps_written_at_the_next_update_are_the_same_and_in_order(tmp_path, monkeypatch) -> None:
    plain = _train(tmp_path / "plain")
    monkeypatch.delenv("PARITY_STEP_WRITER", raising=False)  # the default
    monkeypatch.setattr(recorder, "_copy_at_update", lambda: True)
    monkeypatch.setattr(recorder.digest.Transfer, "on_host", property(lambda self: False))
    threads = []
    monkeypatch.setattr(recorder, "StepWriter", lambda finish: threads.append(finish))
    held = _train(tmp_path / "held")
    assert not threads, "no step-writer thread is started"
    assert not [r for r in held if r.get("key") == "capture_error"]
    assert _steps(held) == _steps(plain)
    assert [r["type"] for r in held][-1] == "end"


def test_an_unknown_step_writer_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PARITY_STEP_WRITER", "later")
    with pytest.raises(parity.exceptions.ConfigError, match="PARITY_STEP_WRITER='later': choose update or thread"):
        _train(tmp_path / "bad")


def test_parity_record_refuses_an_unknown_step_writer_before_running_anything(tmp_path) -> None:
    from parity.capture.launch import record_command

    with pytest.raises(parity.exceptions.ConfigError, match="PARITY_STEP_WRITER='soon'"):
        record_command(["python", "-c", "raise SystemExit(3)"], tmp_path / "run", env={"PARITY_STEP_WRITER": "soon"})
    assert not (tmp_path / "run").exists()
