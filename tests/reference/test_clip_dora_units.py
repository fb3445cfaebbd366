"""In-process checks of the CLIP+DoRA pair's cheap parts: config validation, early stopping, GPU smoke.

Kept apart from the subprocess tests so they do not import transformers or peft.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference.clip_dora.config import TrainConfig
from reference.clip_dora.state import EarlyStopping

REPO = Path(__file__).resolve().parents[2]


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig(**{"out": Path("unused"), "epochs": 4, **overrides})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"preset": "huge"}, "--preset"),
    ({"device": "tpu"}, "--device"),
    ({"epochs": 0}, "--epochs"),
    ({"patience": 0}, "--patience"),
    ({"lr": -1.0}, "--lr"),
    ({"scheduler": "linear"}, "--scheduler"),
    ({"save_at_epochs": (2, 9)}, "--save-at-epochs"),
    ({"stop_after_epoch": 5}, "--stop-after-epoch"),
])
def test_config_rejects_bad_flags(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_stop_epoch_is_always_saved() -> None:
    cfg = _config(save_at_epochs=(1,), stop_after_epoch=3)
    assert [e for e in range(1, 5) if cfg.should_save(e)] == [1, 3]
    assert all(_config().should_save(e) for e in range(1, 5))


def test_early_stopping_counts_only_strict_improvements() -> None:
    stopper = EarlyStopping(patience=2)
    assert stopper.update(1.0) and not stopper.should_stop
    assert not stopper.update(1.0)  # equal is not better
    assert stopper.update(0.5) and stopper.epochs_no_improve == 0
    assert not stopper.update(math.nan)
    assert not stopper.update(0.7) and stopper.should_stop


def test_early_stopping_state_round_trips() -> None:
    stopper = EarlyStopping(patience=3)
    stopper.update(0.25)
    stopper.update(0.5)
    restored = EarlyStopping(patience=3)
    restored.load_state_dict(stopper.state_dict())
    assert restored.state_dict() == {"best_test_loss": 0.25, "epochs_no_improve": 1}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_complete_resume_on_gpu_matches_continuous(tmp_path: Path) -> None:
    """Base preset on one GPU: stop at epoch 1, resume to 2, compare per-step losses bit for bit."""
    def run(out: Path, *flags: str) -> None:
        subprocess.run([sys.executable, "-m", "implementations.clip_dora_complete.train", "--out", str(out),
                        "--preset", "base", "--device", "cuda", "--epochs", "2", *flags],
                       cwd=REPO, check=True)

    run(tmp_path / "cont")
    run(tmp_path / "int", "--stop-after-epoch", "1")
    run(tmp_path / "int", "--resume", str(tmp_path / "int" / "ckpt_epoch1.pt"))
    assert (tmp_path / "cont" / "losses.jsonl").read_text() == (tmp_path / "int" / "losses.jsonl").read_text()
