"""CTC pieces shared by both trainers: upstream's input-length arithmetic, the loss call, greedy decoding, error rate and the evaluation pass."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import CTC_BLANK


def upstream_input_lengths(time_lens: torch.Tensor, kernel_len: int, stride_len: int) -> torch.Tensor:
    """Upstream's T_eff: true division then ``.to(int32)``, i.e. truncation toward zero.

    For T >= K this is floor((T - K) / S), one less than the number of windows fully
    inside the trial (the last valid frame is never scored). For T < K it is 0 or
    negative.
    """
    return ((time_lens - kernel_len) / stride_len).to(torch.int32)


def make_ctc_loss() -> nn.CTCLoss:
    """Upstream's loss: blank 0, per-sample division by target length, batch mean, inf -> 0."""
    return nn.CTCLoss(blank=CTC_BLANK, reduction="mean", zero_infinity=True)


def ctc_loss(loss_fn: nn.CTCLoss, logits: torch.Tensor, labels, input_lengths, label_lengths) -> torch.Tensor:
    """log_softmax over classes, time-major (T_out, B, C+1), then the CTC loss."""
    log_probs = logits.log_softmax(2).permute(1, 0, 2)
    return loss_fn(log_probs, labels, input_lengths, label_lengths)


def greedy_decode(logits: torch.Tensor, length: int) -> np.ndarray:
    """Argmax over frames [0, length), collapse repeats, drop blanks."""
    best = torch.argmax(logits[0:length, :], dim=-1)
    best = torch.unique_consecutive(best).cpu().numpy()
    return best[best != CTC_BLANK]


def edit_distance(reference, hypothesis) -> int:
    """Unit-cost Levenshtein distance (what edit_distance>=1.0.6 computes)."""
    ref = list(reference)
    hyp = list(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_item in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_item in enumerate(hyp, start=1):
            substitution = previous[j - 1] + (ref_item != hyp_item)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
        previous = current
    return previous[-1]


@torch.no_grad()
def evaluate(
    model,
    loader,
    loss_fn,
    args: dict,
    input_lengths_fn=upstream_input_lengths,
    decode_fn=greedy_decode,
    forward_fn=None,
    autocast=None,
) -> tuple[float, float]:
    """One pass over the test loader in eval mode; returns (avgDayLoss, cer).

    avgDayLoss is the mean of batch-mean losses; cer is the micro-averaged phoneme
    error rate (sum of edit distances / sum of true lengths). The keyword hooks default
    to upstream behaviour; the modified trainer swaps in its T_eff, decoder, compiled
    forward and autocast context.
    """
    device = args["device"]
    forward = forward_fn if forward_fn is not None else model
    model.eval()
    batch_losses = []
    total_distance = 0
    total_length = 0
    for features, labels, time_lens, label_lens, days in loader:
        features, labels = features.to(device), labels.to(device)
        time_lens, label_lens, days = time_lens.to(device), label_lens.to(device), days.to(device)
        lengths = input_lengths_fn(time_lens, args["kernelLen"], args["strideLen"])
        if autocast is None:
            logits = forward(features, days)
        else:
            with autocast():
                logits = forward(features, days)
            logits = logits.float()
        loss = ctc_loss(loss_fn, logits, labels, lengths, label_lens)
        batch_losses.append(loss.cpu().detach().numpy())
        for i in range(logits.shape[0]):
            decoded = decode_fn(logits[i], int(lengths[i]))
            truth = labels[i][0 : int(label_lens[i])].cpu().numpy()
            total_distance += edit_distance(truth, decoded)
            total_length += len(truth)
    # np.sum over the float32 batch losses, divided by the number of batches.
    avg_loss = np.sum(batch_losses) / len(loader)
    cer = total_distance / total_length
    return avg_loss, cer
