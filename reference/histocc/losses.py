"""Training losses: the block-order-invariant seq2seq loss and the seq2seq/flat mixer.

Formulas follow fact sheet section 7. Notation: B batch, N blocks, S block size,
L = N*S, V decoder vocabulary, C flat classes.
"""

from __future__ import annotations

import torch
from torch import nn


class BlockOrderInvariantLoss(nn.Module):
    """Cross-entropy that lets each gold code match any of the first k_b predicted blocks.

    Contract: forward takes logits [B, L+1, V] and targets [B, L+2] (BOS ... final EOS)
    and returns a scalar. Matching is a per-target minimum, not an assignment: two gold
    blocks may pick the same predicted block. The final-EOS logit is never trained.
    """

    def __init__(self, pad_idx: int, nb_blocks: int = 5, block_size: int = 5,
                 push_to_pad_scale_factor: float = 1.0, push_to_pad_label_smoothing: float = 0.0):
        super().__init__()
        self.pad_idx = pad_idx
        self.nb_blocks = nb_blocks
        self.block_size = block_size
        self.push_to_pad_scale_factor = push_to_pad_scale_factor
        self.cross_entropy = nn.CrossEntropyLoss(ignore_index=pad_idx, reduction="none")
        self.cross_entropy_push_to_pad = nn.CrossEntropyLoss(
            label_smoothing=push_to_pad_label_smoothing, reduction="none")
        self.register_buffer("padding_mask", torch.full((1, nb_blocks * block_size), pad_idx))

    def _get_target_mask(self, target: torch.Tensor) -> torch.Tensor:
        """[B, N] bool, True for blocks beyond the gold codes (j >= k_b)."""
        first_pad = (target == self.pad_idx).int().argmax(dim=1) // self.block_size
        # argmax is 0 for a row without PAD; a row always holds >= 1 code, so 0 means "all N".
        first_pad[first_pad == 0] = self.nb_blocks
        blocks = torch.arange(self.nb_blocks, device=target.device).unsqueeze(0)
        return blocks >= first_pad.unsqueeze(1)

    def _block_ce(self, yhat: torch.Tensor, target_block: torch.Tensor) -> torch.Tensor:
        """[B, N]: mean CE of each candidate block against one gold block (PAD counts 0, divisor S)."""
        S = self.block_size
        per_candidate = [
            self.cross_entropy(yhat[:, :, c * S:(c + 1) * S], target_block).mean(dim=1)
            for c in range(self.nb_blocks)
        ]
        return torch.stack(per_candidate, dim=1)

    def _order_invariant_loss(self, yhat: torch.Tensor, target: torch.Tensor,
                              target_mask: torch.Tensor) -> torch.Tensor:
        S = self.block_size
        losses = []
        for t in range(self.nb_blocks):
            target_block = target[:, t * S:(t + 1) * S]
            # Stop once no row has a t-th code, so T = max_b k_b blocks are averaged.
            if (target_block == self.pad_idx).all():
                break
            block_loss = self._block_ce(yhat, target_block)
            block_loss = block_loss.masked_fill(target_mask, float("inf"))
            # Mean over all B rows; a row without a t-th code contributes 0.
            losses.append(block_loss.min(dim=1).values.mean())
        return torch.stack(losses).mean()

    def _push_to_pad(self, yhat: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """Mean CE towards PAD on blocks beyond the gold codes, averaged over all B*N blocks."""
        batch = yhat.size(0)
        pad_target = self.padding_mask.expand(batch, -1)
        loss = self.cross_entropy_push_to_pad(yhat, pad_target)
        loss = loss.view(batch, self.nb_blocks, self.block_size).mean(dim=2)
        loss = loss * target_mask
        return loss.mean()

    def forward(self, yhat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # [B, L+1, V] -> [B, V, L]: class dim second for CE, last (final-EOS) position dropped.
        yhat = yhat.permute(0, 2, 1)[:, :, :-1]
        target = target[:, 1:-1]
        target_mask = self._get_target_mask(target)
        loss = self._order_invariant_loss(yhat, target, target_mask)
        return loss + self.push_to_pad_scale_factor * self._push_to_pad(yhat, target_mask)


class LossMixer(nn.Module):
    """w * seq2seq loss + (1 - w) * flat loss.

    Contract: the two component losses stay reachable as attributes, because evaluation
    reports them separately.
    """

    def __init__(self, loss_fn_seq2seq: nn.Module, loss_fn_linear: nn.Module, seq2seq_weight: float = 0.5):
        super().__init__()
        self.loss_fn_seq2seq = loss_fn_seq2seq
        self.loss_fn_linear = loss_fn_linear
        self.seq2seq_weight = seq2seq_weight

    def forward(self, out_seq2seq: torch.Tensor, out_linear: torch.Tensor,
                target_seq2seq: torch.Tensor, target_linear: torch.Tensor) -> torch.Tensor:
        loss_seq2seq = self.loss_fn_seq2seq(out_seq2seq, target_seq2seq)
        loss_linear = self.loss_fn_linear(out_linear, target_linear)
        return self.seq2seq_weight * loss_seq2seq + (1 - self.seq2seq_weight) * loss_linear


def build_loss(pad_idx: int, nb_blocks: int, block_size: int, seq2seq_weight: float) -> LossMixer:
    """The finetune loss: BlockOrderInvariantLoss mixed with a plain BCEWithLogitsLoss."""
    return LossMixer(
        loss_fn_seq2seq=BlockOrderInvariantLoss(pad_idx=pad_idx, nb_blocks=nb_blocks, block_size=block_size),
        loss_fn_linear=nn.BCEWithLogitsLoss(),
        seq2seq_weight=seq2seq_weight,
    )
