"""Fidelity of the reference neural_seq_decoder against independent plain computations (fact sheet 8.3).

Noise, offset and dropout are off and the batch covers the whole training set, so the
only randomness left is initialization; every quantity is then recomputed here with
numpy or hand-written update rules and compared.
"""
from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch

from reference.neural_seq_decoder.config import ADAM_EPS, make_args
from reference.neural_seq_decoder.ctc import edit_distance, greedy_decode, upstream_input_lengths
from reference.neural_seq_decoder.data import SpeechDataset, pad_collate
from reference.neural_seq_decoder.make_data import DataSpec, write_dataset
from reference.neural_seq_decoder.model import GRUDecoder, build_model
from reference.neural_seq_decoder.trainer import EvalRecorder, make_scheduler, seed_everything, train_model

SMALL = DataSpec(16, 6, 2, 6, 3, 2, 4, (3, 5), kernel_len=8, stride_len=4)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Thread count changes float reduction order; pin it and restore it afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("nsd") / "small.pkl"), seed=3, spec=SMALL)


def _quiet_args(dataset, out, **extra):
    n_train = SMALL.n_days * SMALL.train_per_day
    return make_args("tiny", outputDir=str(out), datasetPath=dataset, device="cpu", dropout=0.0, whiteNoiseSD=0.0,
                     constantOffsetSD=0.0, batchSize=n_train, **extra)


def _full_batch(dataset, split="train"):
    with open(dataset, "rb") as handle:
        days = pickle.load(handle)[split]
    return pad_collate([item for item in SpeechDataset(days)])


# --- plain re-computations -------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _plain_gru_direction(xs, w_ih, w_hh, b_ih, b_hh, reverse):
    hidden = w_hh.shape[1]
    h = np.zeros(hidden)
    outputs = []
    for x in (xs[::-1] if reverse else xs):
        gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
        r = _sigmoid(gi[:hidden] + gh[:hidden])
        z = _sigmoid(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])
        n = np.tanh(gi[2 * hidden :] + r * gh[2 * hidden :])
        h = (1 - z) * n + z * h
        outputs.append(h)
    outputs = np.array(outputs)
    return outputs[::-1] if reverse else outputs


def _plain_forward(model: GRUDecoder, x: np.ndarray, day: int) -> np.ndarray:
    """One padded row, float64, straight from the fact sheet's formulas."""
    p = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    taps = p["gaussianSmoother.weight"][0, 0]
    steps = x.shape[0]
    smoothed = np.zeros_like(x)
    for t in range(steps):
        for k in range(len(taps)):
            if 0 <= t + k - 9 < steps:  # 9 zeros left, 10 right
                smoothed[t] += taps[k] * x[t + k - 9]
    z = smoothed @ p["dayWeights"][day] + p["dayBias"][day][0]
    z = z / (1 + np.abs(z))
    kl, sl = model.kernelLen, model.strideLen
    layer_in = np.stack([z[j * sl : j * sl + kl].T.reshape(-1) for j in range((steps - kl) // sl + 1)])
    for layer in range(model.layer_dim):
        outs = []
        for suffix, reverse in (("", False), ("_reverse", True)):
            key = f"l{layer}{suffix}"
            outs.append(_plain_gru_direction(layer_in, p[f"gru_decoder.weight_ih_{key}"], p[f"gru_decoder.weight_hh_{key}"],
                                             p[f"gru_decoder.bias_ih_{key}"], p[f"gru_decoder.bias_hh_{key}"], reverse))
        layer_in = np.concatenate(outs, axis=1)
    return layer_in @ p["fc_decoder_out.weight"].T + p["fc_decoder_out.bias"]


def _plain_ctc_nll(log_probs: np.ndarray, target: list) -> float:
    """Negative log-likelihood by the CTC forward (alpha) recursion, blank = 0."""
    ext = [0]
    for label in target:
        ext += [label, 0]
    alpha = np.full(len(ext), -np.inf)
    alpha[0] = log_probs[0, 0]
    if len(ext) > 1:
        alpha[1] = log_probs[0, ext[1]]
    for t in range(1, log_probs.shape[0]):
        new = np.full(len(ext), -np.inf)
        for s in range(len(ext)):
            terms = [alpha[s]] + ([alpha[s - 1]] if s >= 1 else [])
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new[s] = np.logaddexp.reduce(terms) + log_probs[t, ext[s]]
        alpha = new
    return -float(np.logaddexp(alpha[-1], alpha[-2] if len(ext) > 1 else -np.inf))


# --- tests -------------------------------------------------------------------------------

def test_smoothing_kernel_is_normalized_gaussian_centred_at_9_5():
    model = GRUDecoder(4, 3, 8, 1, nDays=1, strideLen=4, kernelLen=8, gaussianSmoothWidth=2.0, bidirectional=True)
    taps = model.gaussianSmoother.weight[0, 0].double().numpy()
    expected = np.exp(-0.5 * ((np.arange(20) - 9.5) / 2.0) ** 2)
    np.testing.assert_allclose(taps, expected / expected.sum(), rtol=1e-6)
    assert model.gaussianSmoother.weight.shape == (4, 1, 20)


def test_construction_layout_matches_fact_sheet():
    model = GRUDecoder(4, 3, 8, 2, nDays=2, strideLen=4, kernelLen=8, gaussianSmoothWidth=2.0, bidirectional=True)
    keys = list(model.state_dict())
    assert keys[:3] == ["dayWeights", "dayBias", "gaussianSmoother.weight"]
    assert keys[3:7] == [f"gru_decoder.{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert keys[-2:] == ["fc_decoder_out.weight", "fc_decoder_out.bias"]
    assert keys.index("inpLayer0.weight") > keys.index("gru_decoder.bias_hh_l1_reverse")
    assert torch.equal(model.dayWeights[1], torch.eye(4))
    w_hh = model.gru_decoder.weight_hh_l0.detach()
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(8), atol=1e-5, rtol=0)  # orthogonal_ on the whole 3H x H
    seed_everything(0)
    first = GRUDecoder(4, 3, 8, 2, nDays=2, strideLen=4, kernelLen=8, gaussianSmoothWidth=2.0, bidirectional=True)
    seed_everything(0)
    second = GRUDecoder(4, 3, 8, 2, nDays=2, strideLen=4, kernelLen=8, gaussianSmoothWidth=2.0, bidirectional=True)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_input_lengths_truncate_toward_zero():
    lengths = torch.tensor([40, 39, 35, 32, 31, 28, 20], dtype=torch.int32)
    got = upstream_input_lengths(lengths, 32, 4).tolist()
    assert got == [int((t - 32) / 4) for t in lengths.tolist()] == [2, 1, 0, 0, 0, -1, -3]


def test_eval_logits_match_plain_forward(dataset, tmp_path):
    args = _quiet_args(dataset, tmp_path)
    seed_everything(0)
    model = build_model(args, n_days=SMALL.n_days).eval()
    x, _, _, _, days = _full_batch(dataset, "test")
    with torch.no_grad():
        logits = model(x, days)
    for row in (0, len(days) - 1):
        plain = _plain_forward(model, x[row].double().numpy(), int(days[row]))
        np.testing.assert_allclose(logits[row].numpy(), plain, rtol=1e-4, atol=1e-5)


def test_ctc_mean_reduction_matches_alpha_recursion(dataset, tmp_path):
    args = _quiet_args(dataset, tmp_path)
    seed_everything(0)
    model = build_model(args, n_days=SMALL.n_days).eval()
    x, y, x_len, y_len, days = _full_batch(dataset, "test")
    with torch.no_grad():
        log_probs = model(x, days).log_softmax(2)
    lengths = upstream_input_lengths(x_len, args["kernelLen"], args["strideLen"])
    loss = torch.nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)(log_probs.permute(1, 0, 2), y, lengths, y_len)
    plain = [
        _plain_ctc_nll(log_probs[i, : int(lengths[i])].double().numpy(), y[i, : int(y_len[i])].tolist()) / max(1, int(y_len[i]))
        for i in range(len(days))
    ]
    assert math.isclose(loss.item(), float(np.mean(plain)), rel_tol=1e-5)


def test_one_adam_step_matches_hand_update(dataset, tmp_path):
    args = _quiet_args(dataset, tmp_path, nBatch=1)
    seed_everything(args["seed"])
    plain_model = build_model(args, n_days=SMALL.n_days)
    before = {k: v.detach().clone() for k, v in plain_model.named_parameters()}
    x, y, x_len, y_len, days = _full_batch(dataset)
    lengths = upstream_input_lengths(x_len, args["kernelLen"], args["strideLen"])
    loss = torch.nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)(
        plain_model(x, days).log_softmax(2).permute(1, 0, 2), y, lengths, y_len)
    loss.backward()

    captured = {}
    train_model(args, step_hook=lambda step, l, m, o: captured.update({k: v.detach().clone() for k, v in m.named_parameters()}))
    lr, wd = args["lrStart"], args["l2_decay"]
    for name, param in plain_model.named_parameters():
        if param.grad is None:  # the unused inpLayers: Adam never touches them
            assert name.startswith("inpLayer") and torch.equal(captured[name], before[name])
            continue
        g = param.grad.double() + wd * before[name].double()  # coupled L2
        m_hat, v_hat = g, g * g  # first step: bias correction undoes (1 - beta)
        expected = before[name].double() - lr * m_hat / (v_hat.sqrt() + ADAM_EPS)
        torch.testing.assert_close(captured[name].double(), expected, rtol=1e-4, atol=1e-6, msg=name)


def test_day_gradients_are_dense_over_absent_days(dataset, tmp_path):
    args = _quiet_args(dataset, tmp_path)
    seed_everything(0)
    model = build_model(args, n_days=SMALL.n_days)
    x, y, x_len, y_len, days = _full_batch(dataset)
    only_day0 = days == 0
    lengths = upstream_input_lengths(x_len[only_day0], args["kernelLen"], args["strideLen"])
    loss = torch.nn.CTCLoss(zero_infinity=True)(model(x[only_day0], days[only_day0]).log_softmax(2).permute(1, 0, 2),
                                                y[only_day0], lengths, y_len[only_day0])
    loss.backward()
    assert model.dayWeights.grad is not None and torch.count_nonzero(model.dayWeights.grad[1]) == 0
    before = model.dayWeights[1].detach().clone()
    torch.optim.Adam(model.parameters(), lr=0.02, eps=ADAM_EPS, weight_decay=1e-5).step()
    assert not torch.equal(model.dayWeights[1], before)  # moved by the L2 term alone


def test_greedy_decode_and_edit_distance():
    logits = torch.full((6, 4), -5.0)
    for frame, cls in enumerate([1, 1, 0, 1, 2, 2]):
        logits[frame, cls] = 5.0
    assert greedy_decode(logits, 6).tolist() == [1, 1, 2]
    assert greedy_decode(logits, 2).tolist() == [1]
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 4]) == 2
    assert edit_distance([1, 2, 3, 4], [2, 1, 3, 5]) == 3


def test_checkpoint_rule_and_training_stats(tmp_path):
    recorder = EvalRecorder(str(tmp_path))
    model = torch.nn.Linear(1, 1)
    saved = [recorder.record(model, loss, cer) for loss, cer in ((3.0, 0.5), (2.0, 0.5), (1.5, 0.4), (1.4, 0.45))]
    assert saved == [False, False, True, False]  # first never; ties never
    assert all(type(flag) is bool for flag in saved)
    with open(tmp_path / "trainingStats", "rb") as handle:
        stats = pickle.load(handle)
    assert stats["testCER"].tolist() == [0.5, 0.5, 0.4, 0.45] and len(stats["testLoss"]) == 4
    assert os.path.exists(tmp_path / "modelWeights")


def test_linear_lr_schedule_formula():
    args = make_args("tiny", lrStart=0.02, lrEnd=0.01, nBatch=10)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=args["lrStart"])
    scheduler = make_scheduler(args, optimizer)
    for step in range(10):
        expected = 0.02 * (1 + (0.5 - 1) * step / 10)
        assert math.isclose(optimizer.param_groups[0]["lr"], expected, rel_tol=1e-9)
        optimizer.step()
        scheduler.step()


def test_same_seed_gives_bit_identical_losses(dataset, tmp_path):
    args = make_args("tiny", datasetPath=dataset, device="cpu", nBatch=6, batchSize=4)
    first = train_model(dict(args, outputDir=str(tmp_path / "a")))
    second = train_model(dict(args, outputDir=str(tmp_path / "b")))
    assert first["trainLoss"] == second["trainLoss"]
    assert first["testCER"] == second["testCER"]
