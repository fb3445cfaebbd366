"""Fidelity of reference.histocc.losses against hand-computed values and a plain loop implementation."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from reference.histocc.formatter import BOS_IDX, EOS_IDX, PAD_IDX
from reference.histocc.losses import BlockOrderInvariantLoss, LossMixer, build_loss


def _target(codes: list[list[int]], nb_blocks: int, block_size: int) -> list[int]:
    """Block sequence: BOS, codes EOS-filled to S, PAD blocks, final EOS."""
    seq = [BOS_IDX]
    for code in codes:
        seq += code + [EOS_IDX] * (block_size - len(code))
    seq += [PAD_IDX] * (block_size * (nb_blocks - len(codes)))
    return seq + [EOS_IDX]


def _plain_ce(logits: np.ndarray, label: int) -> float:
    m = logits.max()
    return float(m + math.log(np.exp(logits - m).sum()) - logits[label])


def _plain_block_loss(yhat: np.ndarray, target: np.ndarray, nb_blocks: int, block_size: int) -> float:
    """Fact-sheet section 7, written as loops over rows, blocks and positions (float64)."""
    B, S, N = yhat.shape[0], block_size, nb_blocks
    y = target[:, 1:-1]
    k = []
    for b in range(B):
        pads = [i for i in range(N * S) if y[b, i] == PAD_IDX]
        k.append(pads[0] // S if pads and pads[0] // S > 0 else N)
    block_means = []
    for t in range(N):
        if all(y[b, t * S + p] == PAD_IDX for b in range(B) for p in range(S)):
            break
        row_min = []
        for b in range(B):
            best = math.inf
            for c in range(k[b]):
                total = sum(_plain_ce(yhat[b, c * S + p], y[b, t * S + p])
                            for p in range(S) if y[b, t * S + p] != PAD_IDX)
                best = min(best, total / S)
            row_min.append(best)
        block_means.append(sum(row_min) / B)
    loss_oi = sum(block_means) / len(block_means)
    pad_terms = [sum(_plain_ce(yhat[b, j * S + p], PAD_IDX) for p in range(S)) / S if j >= k[b] else 0.0
                 for b in range(B) for j in range(N)]
    return loss_oi + sum(pad_terms) / len(pad_terms)


@st.composite
def _batches(draw):
    nb_blocks = draw(st.integers(1, 4))
    block_size = draw(st.integers(1, 4))
    vocab = draw(st.integers(6, 12))
    batch = draw(st.integers(1, 5))
    rows = []
    for _ in range(batch):
        n_codes = draw(st.integers(1, nb_blocks))
        codes = [draw(st.lists(st.integers(5, vocab - 1), min_size=1, max_size=block_size)) for _ in range(n_codes)]
        rows.append(_target(codes, nb_blocks, block_size))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    gen = torch.Generator().manual_seed(seed)
    L = nb_blocks * block_size
    yhat = torch.randn(batch, L + 1, vocab, generator=gen, dtype=torch.float64) * scale
    return yhat, torch.tensor(rows), nb_blocks, block_size


def test_uniform_logits_hand_computed():
    """Uniform logits over V=8: every CE is ln 8; worked through by hand in the comment."""
    # Row 0 has one code (k=1), row 1 two codes (k=2). Block 0: both rows ln8 -> mean ln8.
    # Block 1: row 0 all PAD -> 0, row 1 ln8 -> mean ln8/2. OI = (ln8 + ln8/2)/2 = 0.75 ln8.
    # Push-to-pad: only (row 0, block 1) counts, ln8 over 4 entries -> 0.25 ln8. Total ln8.
    target = torch.tensor([_target([[5, 6]], 2, 2), _target([[5], [7, 6]], 2, 2)])
    yhat = torch.zeros(2, 5, 8, dtype=torch.float64)
    loss = BlockOrderInvariantLoss(PAD_IDX, nb_blocks=2, block_size=2)(yhat, target)
    assert math.isclose(loss.item(), math.log(8), rel_tol=1e-12)


def test_mixer_hand_computed():
    """w * ln8 + (1 - w) * ln2 with w = 0.1 (BCE of zero logits is ln2)."""
    target = torch.tensor([_target([[5, 6]], 2, 2), _target([[5], [7, 6]], 2, 2)])
    mixer = build_loss(PAD_IDX, nb_blocks=2, block_size=2, seq2seq_weight=0.1)
    loss = mixer(torch.zeros(2, 5, 8, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64),
                 target, torch.tensor([[1.0, 0, 0], [0, 1, 1]], dtype=torch.float64))
    assert math.isclose(loss.item(), 0.1 * math.log(8) + 0.9 * math.log(2), rel_tol=1e-12)


def test_swapped_prediction_blocks_are_free():
    """Gold [A, B] predicted as [B, A] costs what [A, B] costs: matching is order invariant."""
    a, b = [5, 6], [7, 8]
    target = torch.tensor([_target([a, b], 2, 2)])

    def confident(blocks):
        yhat = torch.full((1, 5, 10), -20.0, dtype=torch.float64)
        for pos, tok in enumerate(blocks[0] + blocks[1] + [EOS_IDX]):
            yhat[0, pos, tok] = 20.0
        return yhat

    loss_fn = BlockOrderInvariantLoss(PAD_IDX, nb_blocks=2, block_size=2)
    assert torch.equal(loss_fn(confident([a, b]), target), loss_fn(confident([b, a]), target))
    assert loss_fn(confident([a, b]), target).item() < 1e-12


def test_final_position_is_never_trained():
    """The logit at position L (predicting the final EOS) gets no gradient."""
    target = torch.tensor([_target([[5]], 2, 2)])
    yhat = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    BlockOrderInvariantLoss(PAD_IDX, nb_blocks=2, block_size=2)(yhat, target).backward()
    assert torch.count_nonzero(yhat.grad[0, -1]) == 0


@settings(max_examples=40, deadline=None)
@given(_batches())
def test_block_loss_matches_plain_implementation(batch):
    yhat, target, nb_blocks, block_size = batch
    got = BlockOrderInvariantLoss(PAD_IDX, nb_blocks=nb_blocks, block_size=block_size)(yhat, target)
    want = _plain_block_loss(yhat.numpy(), target.numpy(), nb_blocks, block_size)
    assert math.isclose(got.item(), want, rel_tol=1e-10, abs_tol=1e-12)


@settings(max_examples=20, deadline=None)
@given(_batches(), st.floats(0.0, 1.0))
def test_mixer_matches_formula(batch, weight):
    yhat, target, nb_blocks, block_size = batch
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(yhat.size(0), 7, generator=gen, dtype=torch.float64)
    multi_hot = (torch.rand(yhat.size(0), 7, generator=gen) > 0.7).double()
    seq_loss = BlockOrderInvariantLoss(PAD_IDX, nb_blocks=nb_blocks, block_size=block_size)
    mixer = LossMixer(seq_loss, nn.BCEWithLogitsLoss(), seq2seq_weight=weight)
    got = mixer(yhat, logits, target, multi_hot).item()
    bce = float(np.mean([max(z, 0) - z * y + math.log1p(math.exp(-abs(z)))
                         for z, y in zip(logits.flatten().tolist(), multi_hot.flatten().tolist())]))
    want = weight * _plain_block_loss(yhat.numpy(), target.numpy(), nb_blocks, block_size) + (1 - weight) * bce
    assert math.isclose(got, want, rel_tol=1e-10, abs_tol=1e-12)
