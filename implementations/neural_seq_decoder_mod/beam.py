"""CTC prefix beam search (the seed's run #11 evaluation decoder) and the decoder switch.

No language model: a prefix's score is the total probability of all alignments that
collapse to it, tracked as (ending in blank, ending in a symbol) in log space. Beams
are pruned to ``beam_size`` prefixes per frame, and only the ``beam_size`` most likely
symbols of each frame are extended, which bounds the Python work per frame.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

from reference.neural_seq_decoder.config import CTC_BLANK
from reference.neural_seq_decoder.ctc import greedy_decode

_NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))


def prefix_beam_search(log_probs: np.ndarray, beam_size: int = 20, blank: int = CTC_BLANK) -> list:
    """Most probable label sequence of a (T, C) log-probability matrix."""
    beams = {(): (0.0, _NEG_INF)}  # prefix -> (log p ending in blank, log p ending in symbol)
    n_classes = log_probs.shape[1]
    top = min(beam_size, n_classes)
    for frame in log_probs:
        frame = frame.tolist()
        candidates = sorted(range(n_classes), key=frame.__getitem__, reverse=True)[:top]
        grown = defaultdict(lambda: [_NEG_INF, _NEG_INF])
        for prefix, (p_blank, p_symbol) in beams.items():
            p_total = _logaddexp(p_blank, p_symbol)
            stay = grown[prefix]
            stay[0] = _logaddexp(stay[0], p_total + frame[blank])
            last = prefix[-1] if prefix else None
            for symbol in candidates:
                if symbol == blank:
                    continue
                p = frame[symbol]
                extended = grown[prefix + (symbol,)]
                if symbol == last:
                    # A repeat only starts a new label after a blank; without one it
                    # merges into the current label.
                    extended[1] = _logaddexp(extended[1], p_blank + p)
                    stay[1] = _logaddexp(stay[1], p_symbol + p)
                else:
                    extended[1] = _logaddexp(extended[1], p_total + p)
        ranked = sorted(grown.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)
        beams = {prefix: tuple(scores) for prefix, scores in ranked[:beam_size]}
    best = max(beams.items(), key=lambda item: _logaddexp(*item[1]))[0]
    return list(best)


def make_decoder(name: str, beam_size: int = 20):
    """A ``decode(logits (T_out, C), length) -> np.ndarray`` with the reference's signature."""
    if name == "greedy":
        return greedy_decode
    if name != "beam":
        raise ValueError(f"--decoder must be greedy or beam, not {name!r}")

    def beam_decode(logits: torch.Tensor, length: int) -> np.ndarray:
        log_probs = torch.log_softmax(logits[0:length, :].float(), dim=-1).cpu().numpy()
        return np.asarray(prefix_beam_search(log_probs, beam_size), dtype=np.int64)

    return beam_decode
