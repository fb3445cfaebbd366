"""Self-test of the toy trainer under tests/toy: it must be deterministic and resume bit-identically.

The harness's own tests lean on both properties; if they break here, every comparison of a toy
variant against train.py would report a divergence that is the trainer's fault, not the variant's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

TOY = Path(__file__).parent / "toy"
TRAIN = TOY / "train.py"
STEPS = 20
RESUME_AT = 10
_LOSS_LINE = re.compile(r"^step=(\d+) epoch=\d+ loss=(\S+) ", re.M)


def _start(cwd: Path, *flags: str) -> subprocess.Popen:
    # One thread per child: three of them share the CI box's two cores, and OpenMP spinning on
    # oversubscribed cores is what makes this slow. Every run here uses the same setting.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, str(TRAIN), "--log-every", "1", *flags]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _losses(proc: subprocess.Popen) -> dict[int, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return {int(step): loss for step, loss in _LOSS_LINE.findall(out)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[int, str]]:
    """Run the four trainings, the first three side by side; map run name to {step: loss hex}."""
    cwd = tmp_path_factory.mktemp("toy")
    procs = {
        "first": _start(cwd, "--steps", str(STEPS)),
        "second": _start(cwd, "--steps", str(STEPS)),
        "stopped": _start(cwd, "--steps", str(RESUME_AT), "--save-every", str(RESUME_AT)),
    }
    out = {name: _losses(proc) for name, proc in procs.items()}
    # Relative path on purpose: --ckpt-dir defaults to ./ckpt, and the brief's command is this one.
    resume = _start(cwd, "--steps", str(STEPS), "--resume", f"ckpt/step{RESUME_AT}.pt")
    out["resumed"] = _losses(resume)
    return out


def test_two_runs_print_identical_losses(runs):
    assert sorted(runs["first"]) == list(range(STEPS))
    assert runs["first"] == runs["second"]


def test_resume_matches_continuous_run(runs):
    continuous = {s: v for s, v in runs["first"].items() if s >= RESUME_AT}
    assert sorted(runs["resumed"]) == list(range(RESUME_AT, STEPS))
    assert runs["resumed"] == continuous
    assert runs["stopped"] == {s: v for s, v in runs["first"].items() if s < RESUME_AT}


def test_refactored_loss_is_bit_identical_to_cross_entropy():
    """variants/refactor_loss.py claims training identity; its loss and gradient must match bits."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    loss_a = F.cross_entropy(a, y)
    loss_b = F.nll_loss(F.log_softmax(b, dim=-1), y)
    loss_a.backward()
    loss_b.backward()
    assert loss_a.item().hex() == loss_b.item().hex()
    assert torch.equal(a.grad, b.grad)
