"""On a GPU, capture adds no host-device synchronisation to a step that the trainer does not make itself.

A synchronisation inside a step stops the host from running ahead of the GPU: every microsecond of host
work after it is then step time. torch's sync debug mode warns at each synchronising call; the innermost
frame outside torch that led to it must not be parity's, at any capture level, from the third step on
(the first steps build plans and may compile kernels)."""

from __future__ import annotations

import traceback
import warnings
from pathlib import Path

import pytest
import torch

import parity

PARITY_DIR = str(Path(parity.__file__).parent)
TORCH_DIR = str(Path(torch.__file__).parent)


def _caller(stack: traceback.StackSummary) -> str:
    """The innermost frame outside torch (and outside the warnings module) that led to a warning."""
    for frame in reversed(stack[:-1]):
        if not frame.filename.startswith(TORCH_DIR) and not frame.filename.endswith("warnings.py"):
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "?"


def _synchronising_callers(out: Path, level: str) -> list[str]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.LayerNorm(256),
                                torch.nn.Linear(256, 10)).cuda().bfloat16()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.utils.data.TensorDataset(torch.randn(64, 64), torch.randint(0, 10, (64,)))
    callers: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" in str(message):
            callers.append(_caller(traceback.extract_stack()))

    with parity.record(out, level=level):
        for i, (x, y) in enumerate(torch.utils.data.DataLoader(data, batch_size=8)):
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = show
                torch.cuda.set_sync_debug_mode("warn" if i >= 2 else "default")
                x, y = x.cuda().bfloat16(), y.cuda()
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return callers


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("level", ["full", "every:2", "minimal"])
def test_capture_adds_no_synchronisation_to_a_gpu_step(tmp_path: Path, level: str) -> None:
    callers = _synchronising_callers(tmp_path / "run", level)
    assert [c for c in callers if c.startswith(PARITY_DIR)] == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_steps_record_the_allocator_peak(tmp_path: Path) -> None:
    """The peak is read from the allocator's nested statistics (cheaper than max_memory_allocated)."""
    import json

    _synchronising_callers(tmp_path / "run", "minimal")
    steps = [json.loads(line) for line in (tmp_path / "run" / "trace-rank0.jsonl").read_text().splitlines()]
    peaks = [r["peak_mem_bytes"] for r in steps if r["type"] == "step"]
    param_bytes = 2 * (64 * 256 + 256 + 2 * 256 + 256 * 10 + 10)  # bf16: every step holds at least the weights
    assert len(peaks) == 8 and all(p >= param_bytes for p in peaks)
