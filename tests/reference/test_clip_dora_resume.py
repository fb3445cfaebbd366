"""Subprocess runs of the CLIP+DoRA pair: complete resume is bit-exact, reference resume is not.

All trainer runs happen once per module, in two processes: the first trains the
continuous, interrupted and early-stopping runs, the second resumes from the
checkpoints the first wrote. A process spends ~5 s of CPU importing transformers
and peft, so one process per run would not fit the time budget on two cores; each
run still goes through the trainer's `main(argv)` with a freshly seeded state,
and every resume happens in a different process from the one that saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
REFERENCE = "reference.clip_dora.train"
COMPLETE = "implementations.clip_dora_complete.train"
STEPS_PER_EPOCH = 6  # tiny preset: 192 training images in batches of 32


_DRIVER = """
import importlib, json, sys
codes = [importlib.import_module(module).main(argv) for module, argv in json.loads(sys.argv[1])]
print("EXIT_CODES", json.dumps(codes))
"""
"""Runs trainer invocations, given as JSON [module, argv] pairs, one after another in one process."""


def _run(module: str, out: Path, *flags: str) -> tuple[str, list[str]]:
    return module, ["--out", str(out), "--preset", "tiny", *flags]


def _run_in_one_process(*runs: tuple[str, list[str]]) -> tuple[list[int], str]:
    """Exit codes of `main(argv)` for each run, and the process's stderr."""
    # One thread: the suite shares two cores with other work, and the tiny model gains nothing from more.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(runs)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"trainer runs {runs} crashed:\n{done.stdout}\n{done.stderr}"
    marker = [line for line in done.stdout.splitlines() if line.startswith("EXIT_CODES ")][-1]
    return json.loads(marker.split(" ", 1)[1]), done.stderr


def _losses(out: Path) -> list[dict]:
    with (out / "losses.jsonl").open() as handle:
        return [json.loads(line) for line in handle]


def _final(out: Path) -> dict:
    return json.loads((out / "final.json").read_text())


def _step_bits(out: Path) -> dict[int, str]:
    return {r["step"]: r["loss_hex"] for r in _losses(out) if r["event"] == "train_step"}


def _comparable(records: list[dict]) -> list[dict]:
    """Loss records without fields that legitimately differ between runs (none today but the trainer)."""
    return [{k: v for k, v in r.items() if k != "trainer"} for r in records]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Output dirs of every run the tests below inspect, plus exit codes and stderr of the bad resumes."""
    root = tmp_path_factory.mktemp("clip_dora")
    d = {name: root / name for name in ("complete_cont", "complete_int", "cosine_cont", "cosine_int",
                                        "reference_cont", "reference_res", "early_stop")}
    # The reference pair runs without a scheduler, as in the spec, so only the optimizer
    # and early-stopping omissions can explain its divergence; the complete trainer is
    # checked both without one and with the cosine scheduler, whose state it must carry.
    codes, stderr = _run_in_one_process(
        _run(COMPLETE, d["complete_cont"], "--epochs", "4", "--save-at-epochs", "2"),
        _run(COMPLETE, d["complete_int"], "--epochs", "4", "--stop-after-epoch", "2"),
        _run(COMPLETE, d["cosine_cont"], "--epochs", "4", "--scheduler", "cosine", "--save-at-epochs", "2"),
        _run(COMPLETE, d["cosine_int"], "--epochs", "4", "--scheduler", "cosine", "--stop-after-epoch", "2"),
        _run(REFERENCE, d["reference_cont"], "--epochs", "4", "--save-at-epochs", "2"),
        # lr 0 freezes the adapters, so the test loss repeats exactly and never improves.
        _run(REFERENCE, d["early_stop"], "--epochs", "4", "--lr", "0", "--patience", "1"),
    )
    assert codes == [0] * 6, stderr
    codes, stderr = _run_in_one_process(
        _run(COMPLETE, d["complete_int"], "--epochs", "4", "--resume", str(d["complete_int"] / "ckpt_epoch2.pt")),
        _run(COMPLETE, d["cosine_int"], "--epochs", "4", "--scheduler", "cosine",
             "--resume", str(d["cosine_int"] / "ckpt_epoch2.pt")),
        _run(REFERENCE, d["reference_res"], "--epochs", "4", "--resume", str(d["reference_cont"] / "ckpt_epoch2.pt")),
        # Refused resumes: the last two runs must exit 2 before training anything.
        _run(COMPLETE, root / "refused", "--epochs", "4", "--resume", str(d["reference_cont"] / "ckpt_epoch2.pt")),
        _run(COMPLETE, root / "refused", "--epochs", "4", "--seed", "1",
             "--resume", str(d["complete_int"] / "ckpt_epoch2.pt")),
    )
    d["resume_codes"], d["resume_stderr"] = codes, stderr
    return d


@pytest.mark.parametrize("scheduler", ["none", "cosine"])
def test_complete_resume_is_bit_identical_to_continuous(runs: dict, scheduler: str) -> None:
    prefix = "complete" if scheduler == "none" else "cosine"
    continuous, resumed = runs[f"{prefix}_cont"], runs[f"{prefix}_int"]
    assert _comparable(_losses(resumed)) == _comparable(_losses(continuous))
    assert len(_step_bits(resumed)) == 4 * STEPS_PER_EPOCH
    assert _final(resumed)["param_sha256"] == _final(continuous)["param_sha256"]
    assert _final(resumed)["resumed_from_epoch"] == 2


def test_interrupted_run_stops_after_saving_its_stop_epoch(runs: dict) -> None:
    records = _losses(runs["complete_int"])
    # The file holds epochs 1-2 from the interrupted run and 3-4 appended by the resume.
    assert [r["epoch"] for r in records if r["event"] == "test"] == [1, 2, 3, 4]
    assert sorted(p.name for p in runs["complete_int"].glob("ckpt_epoch*.pt")) == [
        f"ckpt_epoch{e}.pt" for e in (1, 2, 3, 4)]


def test_pair_trains_identically_when_not_resumed(runs: dict) -> None:
    # Negative control for the divergence below: the trainers differ only in what they checkpoint.
    assert _comparable(_losses(runs["reference_cont"])) == _comparable(_losses(runs["complete_cont"]))


def test_reference_resume_diverges_after_the_resume_point(runs: dict) -> None:
    continuous, resumed = _step_bits(runs["reference_cont"]), _step_bits(runs["reference_res"])
    first = 2 * STEPS_PER_EPOCH + 1
    assert sorted(resumed) == list(range(first, 4 * STEPS_PER_EPOCH + 1))
    # Restored DoRA params and RNG states give the same batch, dropout and loss on the
    # first resumed step; the fresh AdamW's different update shows from the next one.
    assert resumed[first] == continuous[first]
    assert all(resumed[s] != continuous[s] for s in range(first + 1, 4 * STEPS_PER_EPOCH + 1))
    assert _final(runs["reference_res"])["param_sha256"]["__all__"] != \
        _final(runs["reference_cont"])["param_sha256"]["__all__"]


def test_reference_checkpoint_holds_only_dora_parameters_and_rng_states(runs: dict) -> None:
    checkpoint = torch.load(runs["reference_cont"] / "ckpt_epoch2.pt", weights_only=True)
    assert set(checkpoint) == {"dora_parameters", "rng_state"}
    assert set(checkpoint["rng_state"]) == {
        "torch_rng_state", "numpy_rng_state", "python_rng_state", "cuda_rng_state_all"}
    kinds = {name.split(".out_proj.")[1].split(".")[0] for name in checkpoint["dora_parameters"]}
    assert kinds == {"lora_A", "lora_B", "lora_magnitude_vector"}


def test_complete_checkpoint_holds_the_full_list(runs: dict) -> None:
    checkpoint = torch.load(runs["cosine_int"] / "ckpt_epoch2.pt", weights_only=True)
    assert set(checkpoint) == {"dora_parameters", "rng_state", "optimizer_state", "early_stopping_state",
                               "scheduler_state", "epoch", "global_step", "metadata"}
    without_scheduler = torch.load(runs["complete_int"] / "ckpt_epoch2.pt", weights_only=True)
    assert set(checkpoint) - set(without_scheduler) == {"scheduler_state"}
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 2 * STEPS_PER_EPOCH
    assert set(checkpoint["early_stopping_state"]) == {"best_test_loss", "epochs_no_improve"}
    moments = next(iter(checkpoint["optimizer_state"]["state"].values()))
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(moments)
    assert checkpoint["metadata"]["args"]["scheduler"] == "cosine"


def test_interrupted_checkpoint_equals_the_continuous_one(runs: dict) -> None:
    a = torch.load(runs["complete_int"] / "ckpt_epoch2.pt", weights_only=True)
    b = torch.load(runs["complete_cont"] / "ckpt_epoch2.pt", weights_only=True)
    for name, tensor in a["dora_parameters"].items():
        assert torch.equal(tensor, b["dora_parameters"][name]), name
    assert torch.equal(a["rng_state"]["torch_rng_state"], b["rng_state"]["torch_rng_state"])
    assert a["early_stopping_state"] == b["early_stopping_state"]


def test_complete_trainer_refuses_checkpoints_it_cannot_resume(runs: dict) -> None:
    assert runs["resume_codes"] == [0, 0, 0, 2, 2], runs["resume_stderr"]
    assert "not a complete checkpoint" in runs["resume_stderr"]
    assert "pass the original --seed" in runs["resume_stderr"]


def test_early_stopping_triggers_with_small_patience(runs: dict) -> None:
    final = _final(runs["early_stop"])
    assert final["stop_reason"] == "early_stopping"
    # Epoch 1 sets the best; epoch 2 repeats it exactly, which is one epoch without improvement.
    assert final["last_epoch"] == 2 and final["epochs_no_improve"] == 1
    assert _losses(runs["early_stop"])[-1] == {"event": "early_stop", "epoch": 2, "patience": 1,
                                               "trainer": "reference"}
