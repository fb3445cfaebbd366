"""The OCCPAST candidate: differential tests against reference.histocc, end-to-end, resume and DDP runs."""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import implementations.occpast.finetune as cand
import reference.histocc.finetune as ref
from implementations.occpast.engine import _backward_and_step, autocast_context
from reference.histocc import losses as ref_losses
from reference.histocc.engine import forward_batch
from reference.histocc.formatter import PAD_IDX
from reference.histocc.make_data import TARGET_COLS, make_rows, write_csv
from reference.histocc.model import build_model
from test_histocc_losses import _batches
from test_histocc_trainer import _log_steps, _one_torch_thread, _run, _tiny_args, reference_first_leg  # noqa: F401

CAND = "implementations.occpast.finetune"


def _lrs(scheduler, optimizer, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def _opt(lr: float = 1e-3):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@settings(max_examples=25, deadline=None)
@given(_batches(), st.floats(0.0, 1.0))
def test_candidate_loss_and_mixer_bitwise_equal_reference(batch, weight):
    yhat, target, nb_blocks, block_size = batch
    logits = torch.linspace(-2, 2, yhat.size(0) * 5, dtype=torch.float64).view(-1, 5)
    multi_hot = (logits > 0.3).double()
    ref_fn = ref_losses.build_loss(PAD_IDX, nb_blocks, block_size, weight)
    cand_fn = cand.build_loss(PAD_IDX, nb_blocks, block_size, weight)
    assert torch.equal(cand_fn.loss_fn_seq2seq(yhat, target), ref_fn.loss_fn_seq2seq(yhat, target))
    assert torch.equal(cand_fn(yhat, logits, target, multi_hot), ref_fn(yhat, logits, target, multi_hot))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.floats(0.0, 0.5))
def test_candidate_schedule_bitwise_equal_reference(total, pct):
    warmup = cand.warmup_steps_from_pct(total, pct)
    assert warmup == int(total * pct)
    o1, o2 = _opt(), _opt()
    cand_lrs = _lrs(cand.build_scheduler(o1, warmup, total), o1, total + 2)
    assert cand_lrs == _lrs(ref.build_scheduler(o2, warmup, total), o2, total + 2)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 400))
def test_zero_warmup_pct_reproduces_upstream_default(total):
    o1, o2 = _opt(), _opt()
    zero_pct = cand.build_scheduler(o1, cand.warmup_steps_from_pct(total, 0.0), total)
    upstream_default = ref.build_scheduler(o2, ref.parse_reference_args([]).warmup_steps, total)
    assert _lrs(zero_pct, o1, total + 1) == _lrs(upstream_default, o2, total + 1)


def test_default_warmup_pct_changes_the_schedule():
    assert cand.parse_args([]).warmup_pct == 0.05
    o1, o2 = _opt(), _opt()
    assert _lrs(cand.build_scheduler(o1, cand.warmup_steps_from_pct(100, 0.05), 100), o1, 3)[0] == 0.0
    assert _lrs(ref.build_scheduler(o2, 0, 100), o2, 3)[0] == 1e-3


def _step_inputs():
    torch.manual_seed(0)
    model = build_model([2086] * 12, 6, preset="tiny")
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(97, 123, (3, 128), generator=gen)
    mask = torch.ones_like(ids)
    seq = torch.tensor([[2, 1005, 1006, 1007, 1008, 1009, 1, 1, 1, 1, 1, 3]] * 3)
    flat = torch.zeros(3, 6)
    flat[:, 0] = 1
    return model, (ids, mask, seq, flat)


def _one_step(model, batch, candidate: bool, use_amp: bool = False):
    ids, mask, seq, flat = batch
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = ref.build_scheduler(opt, 0, 10)
    loss_fn = ref_losses.build_loss(PAD_IDX, 2, 5, 0.1)
    torch.manual_seed(5)  # CANINE dropout draws
    with autocast_context(torch.device("cpu"), use_amp):
        loss = loss_fn(*forward_batch(model, ids, mask, seq), seq, flat)
    if candidate:
        _backward_and_step(loss, model, opt, sched, scaler=None)
    else:  # the reference's inline order
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        sched.step()
    return loss


def test_candidate_optimizer_step_bitwise_equal_reference():
    model, batch = _step_inputs()
    twin = copy.deepcopy(model)
    assert torch.equal(_one_step(model, batch, candidate=True), _one_step(twin, batch, candidate=False))
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), name


def test_cpu_amp_runs_in_bf16_and_stays_finite():
    model, batch = _step_inputs()
    before = model.decoder.head.weight.detach().clone()
    loss = _one_step(model, batch, candidate=True, use_amp=True)
    assert torch.isfinite(loss) and not torch.equal(before, model.decoder.head.weight)


@pytest.fixture(scope="module")
def runs():
    """Candidate subprocess run to step 4 beside the shared reference run (same data and seed).

    A different PYTHONHASHSEED than the reference run checks that --seed alone fixes the
    augmentation word list.
    """
    first = reference_first_leg()
    cand_save = os.path.join(first["base"], "cand")
    out = _run(CAND, _tiny_args(first["data"], cand_save, "--save-interval", "3", "--max-steps", "4",
                                "--warmup-pct", "0"), hash_seed="456")
    return {**first, "ref": first["save"], "cand": cand_save, "out": out}


def test_candidate_reproduces_reference_bitwise(runs):
    a = torch.load(os.path.join(runs["ref"], "4.bin"))
    b = torch.load(os.path.join(runs["cand"], "4.bin"))  # the candidate's final save
    assert a.keys() == b.keys() and a["step"] == b["step"] == 4
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for idx, state in a["optimizer"]["state"].items():
        assert all(torch.equal(state[k], b["optimizer"]["state"][idx][k]) for k in state)
    with open(os.path.join(runs["ref"], "logs.csv")) as fa, open(os.path.join(runs["cand"], "logs.csv")) as fb:
        rows_a, rows_b = [line.split(",") for line in fa], [line.split(",") for line in fb]
    # Losses and metrics identical; the two timing columns differ.
    assert [r[:1] + r[3:] for r in rows_a[:3]] == [r[:1] + r[3:] for r in rows_b[:3]]


def test_candidate_final_save_and_resume_with_epoch_saves(runs, tmp_path, capsys):
    save = str(tmp_path / "cand")
    shutil.copytree(runs["cand"], save)
    assert os.path.isfile(os.path.join(save, "3.bin")) and torch.load(os.path.join(save, "last.bin"))["step"] == 4
    cand.main(_tiny_args(runs["data"], save, "--save-interval", "3", "--max-steps", "10",
                         "--warmup-pct", "0", "--save-each-epoch"))
    out = capsys.readouterr().out
    assert "Resumed from" in out and "at step 4" in out
    # Resume restarts a fresh 6-batch epoch at step 4, so the epoch ends at step 10.
    assert torch.load(os.path.join(save, "epoch_1.bin"))["step"] == 10
    assert torch.load(os.path.join(save, "last.bin"))["step"] == 10
    assert _log_steps(save) == [2, 4, 6, 8, 10]


def test_ddp_two_process_cpu_run(runs):
    save = os.path.join(runs["base"], "ddp")
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    out = _run(CAND, _tiny_args(runs["data"], save, "--save-interval", "2", "--max-steps", "2"), prefix=torchrun)
    last = torch.load(os.path.join(save, "last.bin"))
    assert last["step"] == 2 and not any(k.startswith("module.") for k in last["model"])
    assert _log_steps(save) == [2]
    assert out.count("Training finished") == 1, "only the main process reports"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_amp_run(tmp_path):
    data = str(tmp_path / "data.csv")
    write_csv(data, make_rows(48, seed=0))
    args = _tiny_args(data, str(tmp_path / "run"), "--save-interval", "2", "--max-steps", "4", "--use-amp")
    out = _run(CAND, [a if a != "cpu" else "cuda" for a in args])
    assert "Training finished at step 4" in out
