"""Evaluation metrics and running averages: block-order-invariant accuracy and flat set accuracy."""

from __future__ import annotations

import torch


class Averager:
    """Weighted running mean; `update(value, n)` counts value n times."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.sum = 0.0
        self.count = 0
        self.avg = 0.0

    def update(self, val: float, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def order_invariant_accuracy(output: torch.Tensor, target: torch.Tensor,
                             nb_blocks: int, block_size: int) -> tuple[float, float]:
    """Sequence and token accuracy (percent) of predicted indices [B, L+1] against targets [B, L+1].

    For each gold block t < N, h[b, t] is the best fraction of matching positions over
    candidate blocks c < N. PAD targets are tokens to match; the final position is ignored.
    Returns (seq_acc, token_acc): 100 * share of rows with all h = 1, and 100 * mean h.
    """
    S = block_size
    per_block = []
    for t in range(nb_blocks):
        gold = target[:, t * S:(t + 1) * S]
        candidates = torch.stack(
            [(output[:, c * S:(c + 1) * S] == gold).float().mean(dim=1) for c in range(nb_blocks)], dim=1)
        per_block.append(candidates.max(dim=1).values)
    h = torch.stack(per_block, dim=1)  # [B, N]
    seq_acc = 100 * (h == 1).all(dim=1).float().mean().item()
    token_acc = 100 * h.mean().item()
    return seq_acc, token_acc


def flat_accuracy(out_linear: torch.Tensor, target_linear: torch.Tensor) -> float:
    """Exact-set-match share in [0, 1] (multilabel `accuracy_score` on sigmoid > 0.5)."""
    pred = torch.sigmoid(out_linear) > 0.5
    return (pred == target_linear.bool()).all(dim=1).float().mean().item()
