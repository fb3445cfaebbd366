"""Per-tensor sums of many CUDA tensors in ONE kernel launch that reads each byte once (Triton).

`fused.py` defines the sums (sum64 over 8-byte words, and the element sum) and computes them with a
few torch kernels per tensor. On a fast GPU step with hundreds of tensors that costs launches, host
time and, for the element sum of 2-byte elements, a widening reduction that runs at a tenth of the
memory bandwidth. Here one Triton kernel walks every tensor in blocks of 8-byte words: each program
loads one block once, sums the words, and sums the element lanes it extracts from the same words
with shifts (sign-extended for 2-, 4- and 8-byte elements, zero-extended for bytes, as
`digest._element_sum` reads them). One cumulative sum and a gather turn the per-block partial sums
into per-tensor sums, so the values are bit-identical to the torch plan (integer addition mod 2**64
is associative and commutative) and the whole digest is three launches, whatever the tensor count.

Tensors are addressed as int64 word offsets from an anchor allocation on the same device (one
virtual address space per device), which needs each tensor's start and size to be whole 8-byte
words; `split_eligible` leaves the others to the torch plan.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

#: Words (8 bytes) per program: 32 KiB reads, enough to stream at full bandwidth.
BLOCK_WORDS = 4096


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Triton can be imported (CUDA builds of torch ship it). Checked once."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure (missing, broken toolchain) means: use torch
        return False
    return True


def split_eligible(tensors: Sequence[torch.Tensor]) -> tuple[list[int], list[int]]:
    """Positions of tensors the kernel can read in place (CUDA, contiguous, whole aligned words), and the rest."""
    yes, no = [], []
    for i, t in enumerate(tensors):
        nbytes = t.numel() * t.element_size()
        ok = (t.device.type == "cuda" and t.is_contiguous() and t.data_ptr() % 8 == 0 and nbytes % 8 == 0
              and nbytes > 0 and t.element_size() in (1, 2, 4, 8))
        (yes if ok else no).append(i)
    return yes, no


@functools.lru_cache(maxsize=None)
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def segment_sums(anchor, seg_offset, seg_words, seg_width, block_seg, block_start, words_out, elements_out,
                     BLOCK: tl.constexpr, ELEMENTS: tl.constexpr):
        pid = tl.program_id(0)
        seg = tl.load(block_seg + pid)
        start = tl.load(block_start + pid)
        offset = tl.load(seg_offset + seg)
        count = tl.load(seg_words + seg)
        index = start + tl.arange(0, BLOCK).to(tl.int64)
        w = tl.load(anchor + offset + index, mask=index < count, other=0)
        tl.store(words_out + pid, tl.sum(w, axis=0))
        if ELEMENTS:
            width = tl.load(seg_width + seg)
            if width == 2:
                e = ((w << 48) >> 48) + ((w << 32) >> 48) + ((w << 16) >> 48) + (w >> 48)
            elif width == 4:
                e = ((w << 32) >> 32) + (w >> 32)
            elif width == 1:
                e = (w & 0xFF) + ((w >> 8) & 0xFF) + ((w >> 16) & 0xFF) + ((w >> 24) & 0xFF) \
                    + ((w >> 32) & 0xFF) + ((w >> 40) & 0xFF) + ((w >> 48) & 0xFF) + ((w >> 56) & 0xFF)
            else:
                e = w
            tl.store(elements_out + pid, tl.sum(e, axis=0))

    return segment_sums


class TritonSums:
    """Word and element sums of a fixed list of eligible tensors on one CUDA device, one launch per call.

    Built once per list (the tables of offsets and blocks live on the device); `run` never synchronises.
    """

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        device = tensors[0].device
        self.n = len(tensors)
        # Any live allocation on the device serves as the anchor; it is kept alive with the plan.
        self._anchor = torch.empty(1, dtype=torch.int64, device=device)
        base = self._anchor.data_ptr()
        offsets, words, widths, block_seg, block_start, bounds = [], [], [], [], [], []
        for seg, t in enumerate(tensors):
            n_words = t.numel() * t.element_size() // 8
            offsets.append((t.data_ptr() - base) // 8)
            words.append(n_words)
            widths.append(t.element_size())
            first = len(block_seg)
            for start in range(0, n_words, BLOCK_WORDS):
                block_seg.append(seg)
                block_start.append(start)
            bounds.append((first, len(block_seg)))

        def table(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.int64, device=device)

        self._offsets, self._words, self._widths = table(offsets), table(words), table(widths)
        self._block_seg, self._block_start = table(block_seg), table(block_start)
        self._blocks = len(block_seg)
        # Tensor i owns partial sums [a, b): its sum is P[b] - P[a], P the cumulative sum preceded by 0.
        self._index = table([b for _, b in bounds]), table([a for a, _ in bounds])

    def run(self, elements: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(word sums, element sums or None): int64 device vectors, entry i for the i-th tensor."""
        device = self._anchor.device
        words = torch.empty(self._blocks, dtype=torch.int64, device=device)
        parts = torch.empty(self._blocks, dtype=torch.int64, device=device) if elements else words
        _kernel()[(self._blocks,)](self._anchor, self._offsets, self._words, self._widths, self._block_seg,
                                   self._block_start, words, parts, BLOCK=BLOCK_WORDS, ELEMENTS=elements)
        return self._per_tensor(words), self._per_tensor(parts) if elements else None

    def _per_tensor(self, partials: torch.Tensor) -> torch.Tensor:
        prefix = torch.zeros(self._blocks + 1, dtype=torch.int64, device=partials.device)
        torch.cumsum(partials, 0, out=prefix[1:])
        return prefix[self._index[0]] - prefix[self._index[1]]
