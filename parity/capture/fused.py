"""Per-tensor sums of many tensors (parameters, optimizer state) in a few kernels per device.

`digest.py` defines the sums one tensor at a time: ``sum64`` (the tensor's bytes zero-padded to 8-byte
words, summed mod 2**64) and the element sum (each element's bits read as a signed integer of its width,
unsigned for 1-byte elements, summed mod 2**64). Launching one reduction per tensor costs a kernel
launch and host time per tensor, which dominates a fast GPU step with hundreds of tensors. A `SumPlan`
computes the same values for a fixed list of tensors in a few kernels:

  * a tensor of at least `BIG_BYTES` is reduced where it lies, in rows of `ROW_BYTES` (one kernel per
    tensor and sum kind, reading it once); its last partial row joins the small tensors;
  * the small tensors (and those last rows) are copied into one buffer per element width, each padded
    with zeros to whole `SMALL_ROW_BYTES` rows, and reduced row by row in one kernel per sum kind;
  * the row sums of all of them are folded into per-tensor sums with one cumulative sum and a gather.
Zero padding adds nothing to either sum, rows never straddle two tensors, and integer addition mod
2**64 is associative, so the values are bit-identical to the per-tensor definition.

A plan holds views of the tensors' memory, built once, so later calls see in-place updates (optimizer
steps) without rebuilding. `PlanCache` rebuilds a plan when any tensor is another object, moved to
another address or changed shape or dtype. On the CPU, torch's integer reductions are many times
slower than numpy's, so CPU tensors are summed one by one through numpy views (also built once). On
CUDA, where Triton is available, one Triton kernel reads every aligned tensor once for both kinds
(`fused_triton.py`); the plan above takes the few tensors it cannot address.
"""

from __future__ import annotations

from typing import Sequence

import operator
import os

import numpy as np
import torch

from parity.capture import fused_triton

#: Element width in bytes -> the integer dtype its bits are read as (`digest._element_sum`).
INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
#: Sum kinds: the 8-byte-word sum (sum64) and the element sum (`param_sums`).
WORDS = "words"
ELEMENTS = "elements"

#: Tensors at least this big are reduced in place (a kernel each); smaller ones are copied together.
BIG_BYTES = 1 << 20
#: Row length of an in-place reduction: long enough to stream, short enough for many rows per tensor.
ROW_BYTES = 8192
#: Row length of the buffer of small tensors: each tensor wastes less than one row of zeros.
SMALL_ROW_BYTES = 512
#: Most bytes copied into one buffer of small tensors, which bounds the temporary memory.
CHUNK_BYTES = 64 << 20

_MASK64 = (1 << 64) - 1
#: Set to 0 to sum CUDA tensors with the torch plan only (the benchmark compares both).
ENV_TRITON = "PARITY_FUSED_TRITON"


def _bytes_of(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor's memory as a flat uint8 view."""
    return t.reshape(-1).view(torch.uint8)


#: Sums of one kind: a Python int per tensor summed on the host (None where a device computes it),
#: and (positions, device int64 vector) per device, the vector's entry k being tensor positions[k]'s sum.
Sums = tuple[list, list[tuple[list[int], torch.Tensor]]]


class SumPlan:
    """Per-tensor sums of one fixed list of tensors (any mix of devices), a few kernels per device.

    Never synchronises with a device: device sums come back as device vectors (`Sums`). `meta` holds
    each tensor's (dtype, shape) as the digests record them.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], use_torch: bool | None = None) -> None:
        tensors = [t.detach() for t in tensors]
        self.n = len(tensors)
        self.meta = _meta(tensors)
        self.prefixes = meta_prefixes(self.meta)  # built once with the plan, used at every step
        groups: dict[torch.device, list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(t.device, []).append(i)
        self._parts: list[tuple[list[int], _DevicePlan | _TritonPart]] = []
        for device, positions in groups.items():
            local = [tensors[i] for i in positions]
            if device.type == "cuda" and use_triton():
                inside, outside = fused_triton.split_eligible(local)
                if inside:
                    self._parts.append(([positions[k] for k in inside], _TritonPart([local[k] for k in inside])))
                local, positions = [local[k] for k in outside], [positions[k] for k in outside]
            if local:
                self._parts.append((positions, _DevicePlan(local, use_torch)))
        self.reusable = all(part.reusable for _, part in self._parts)

    def run(self, kinds: Sequence[str]) -> list[Sums]:
        """One `Sums` per kind in `kinds` (WORDS, ELEMENTS)."""
        out: list[Sums] = [([None] * self.n, []) for _ in kinds]
        for positions, part in self._parts:
            for (ints, blocks), result in zip(out, part.run(kinds)):
                if isinstance(result, torch.Tensor):
                    blocks.append((positions, result))
                else:
                    for i, v in zip(positions, result):
                        ints[i] = v
        return out


class _DevicePlan:
    """Per-tensor sums of one fixed list of tensors on one device, as a few kernels.

    `run` launches the device work and returns one int64 vector per requested kind (entry i: the
    i-th tensor's sum, mod 2**64, as signed int64); it never synchronises with the device. On the CPU
    (unless `use_torch`) it returns lists of Python ints computed through numpy instead.
    """

    def __init__(self, tensors: list[torch.Tensor], use_torch: bool | None = None) -> None:
        self.n = len(tensors)
        self.device = tensors[0].device
        self.use_torch = self.device.type != "cpu" if use_torch is None else bool(use_torch)
        # A non-contiguous tensor is summed through a copy, which goes stale: such a plan is not reused.
        self.reusable = all(t.is_contiguous() for t in tensors)
        tensors = [t if t.is_contiguous() else t.contiguous() for t in tensors]
        self.widths = [t.element_size() for t in tensors]
        if self.use_torch:
            self._plan_torch(tensors)
        else:
            self._plan_numpy(tensors)

    # -- numpy (CPU) -----------------------------------------------------------------------------
    def _plan_numpy(self, tensors: list[torch.Tensor]) -> None:
        self._np: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        for t, width in zip(tensors, self.widths):
            raw = _bytes_of(t).numpy()
            whole = raw.size - raw.size % 8
            elements = t.reshape(-1).view(INT_VIEW[width]).numpy() if width in INT_VIEW else None
            self._np.append((raw[:whole].view(np.int64), raw[whole:], elements))

    def _run_numpy(self, kinds: Sequence[str]) -> list[list[int]]:
        out: list[list[int]] = []
        with np.errstate(over="ignore"):
            for kind in kinds:
                if kind == WORDS:
                    # Most optimizer-state tensors on the CPU are 0-d step counters: all tail, no words.
                    out.append([((int(words.sum()) if words.size else 0) + int.from_bytes(tail.tobytes(), "little")) & _MASK64
                                for words, tail, _ in self._np])
                else:
                    out.append([int(elements.sum(dtype=np.int64)) & _MASK64 for _, _, elements in self._np])  # type: ignore[union-attr]
        return out

    # -- torch (any device) ----------------------------------------------------------------------
    def _plan_torch(self, tensors: list[torch.Tensor]) -> None:
        # Rows of every reduction land in one vector: the small buffers' rows first, then the bodies'.
        # Tensor i owns small rows [a, b) and body rows [c, d); its sum is P[b] - P[a] + P[d] - P[c]
        # with P the cumulative sum of the row sums, preceded by 0.
        small: dict[int, list[tuple[int, torch.Tensor]]] = {}
        bodies: list[tuple[int, torch.Tensor]] = []
        for i, (t, width) in enumerate(zip(tensors, self.widths)):
            raw = _bytes_of(t)
            # A body is read in place as int64 words, which needs its start 8-byte aligned in storage.
            aligned = t.storage_offset() * width % 8 == 0
            body = raw.numel() - raw.numel() % ROW_BYTES if raw.numel() >= BIG_BYTES and aligned else 0
            if body:
                bodies.append((i, raw[:body]))
            small.setdefault(width, []).append((i, raw[body:]))
        bounds = [[0, 0, 0, 0] for _ in range(self.n)]
        rows = 0
        # (width, parts to concatenate, first row, row count) per buffer of small tensors.
        self._chunks: list[tuple[int, list[torch.Tensor], int, int]] = []
        zeros = torch.zeros(SMALL_ROW_BYTES, dtype=torch.uint8, device=self.device)
        for width, parts in small.items():
            chunk: list[torch.Tensor] = []
            start = rows
            for i, raw in parts:
                size = raw.numel()
                if chunk and (rows - start) * SMALL_ROW_BYTES + size > CHUNK_BYTES:
                    self._chunks.append((width, chunk, start, rows - start))
                    chunk, start = [], rows
                pad = -size % SMALL_ROW_BYTES
                chunk += [raw, zeros[:pad]] if pad else [raw]
                bounds[i][0] = rows
                rows += (size + pad) // SMALL_ROW_BYTES
                bounds[i][1] = rows
            if rows > start:
                self._chunks.append((width, chunk, start, rows - start))
        self._bodies: list[tuple[int, torch.Tensor, int, int]] = []
        for i, raw in bodies:
            count = raw.numel() // ROW_BYTES
            self._bodies.append((self.widths[i], raw, rows, count))
            bounds[i][2], bounds[i][3] = rows, rows + count
            rows += count
        self._rows = rows
        self._index = torch.tensor([[b, a, d, c] for a, b, c, d in bounds], dtype=torch.int64,
                                   device=self.device).reshape(self.n, 4)
        self._sign = torch.tensor([1, -1, 1, -1], dtype=torch.int64, device=self.device)

    def _run_torch(self, kinds: Sequence[str]) -> list[torch.Tensor]:
        row_sums = [torch.empty(self._rows, dtype=torch.int64, device=self.device) for _ in kinds]
        for width, parts, start, count in self._chunks:
            buffer = torch.cat(parts)  # a copy even of one part: the part may start off a word boundary
            for kind, out in zip(kinds, row_sums):
                torch.sum(_as_rows(buffer, kind, width, count), 1, out=out[start:start + count])
        for width, raw, start, count in self._bodies:
            for kind, out in zip(kinds, row_sums):
                torch.sum(_as_rows(raw, kind, width, count), 1, out=out[start:start + count])
        results = []
        for out in row_sums:
            prefix = torch.zeros(self._rows + 1, dtype=torch.int64, device=self.device)
            torch.cumsum(out, 0, out=prefix[1:])
            results.append((prefix[self._index] * self._sign).sum(1))
        return results

    def run(self, kinds: Sequence[str]) -> list:
        """One result per kind in `kinds` (WORDS, ELEMENTS): a device int64 vector, or a list of ints."""
        if ELEMENTS in kinds and any(w not in INT_VIEW for w in self.widths):
            raise KeyError(f"element sums need elements of 1, 2, 4 or 8 bytes, not {sorted(set(self.widths))}")
        return self._run_torch(kinds) if self.use_torch else self._run_numpy(kinds)


def use_triton() -> bool:
    """CUDA sums go through the Triton kernel: Triton imports and PARITY_FUSED_TRITON is not 0."""
    return os.environ.get(ENV_TRITON, "1") != "0" and fused_triton.available()


class _TritonPart:
    """Aligned CUDA tensors summed by the Triton kernel: both kinds from one read."""

    reusable = True

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self._sums = fused_triton.TritonSums(tensors)

    def run(self, kinds: Sequence[str]) -> list[torch.Tensor]:
        words, elements = self._sums.run(ELEMENTS in kinds)
        return [words if kind == WORDS else elements for kind in kinds]


def _as_rows(raw: torch.Tensor, kind: str, width: int, count: int) -> torch.Tensor:
    """A uint8 buffer of `count` whole rows as (count, words) int64 or (count, elements) ints."""
    return (raw.view(torch.int64) if kind == WORDS else raw.view(INT_VIEW[width])).view(count, -1)


class PlanCache:
    """The last `SumPlan` per slot (parameters, optimizer state), rebuilt when its tensors change.

    A tensor "changes" when the list holds another object at its position, or the same object now
    points at another address or has another shape or dtype (``param.data = ...``). Checking that costs
    a few attribute reads per tensor, far less than building views.
    """

    def __init__(self) -> None:
        self._plans: dict[str, tuple[list, list[tuple[int, torch.dtype, torch.Size]], SumPlan]] = {}

    def plan(self, slot: str, tensors: Sequence[torch.Tensor], local: Sequence[torch.Tensor],
             use_torch: bool | None = None) -> SumPlan:
        """The plan for `local` (what is summed: each tensor's own shard), keyed by the `tensors` they come from."""
        # Checked every step, so kept to a few attribute reads per tensor: the same objects at the same
        # addresses with the same (shape, dtype); a plan reading freed memory would be wrong, not slow.
        layout = [(x.data_ptr(), x.dtype, x.shape) for x in local]
        held = self._plans.get(slot)
        if (held is not None and held[2].reusable and held[1] == layout and len(held[0]) == len(tensors)
                and all(map(operator.is_, held[0], tensors))):
            return held[2]
        plan = SumPlan(local, use_torch)
        self._plans[slot] = (list(tensors), layout, plan)
        return plan


def meta_prefixes(meta: Sequence[tuple[str, tuple]]) -> list[str]:
    """Per tensor, the repr of its digest part (dtype, shape, sum) up to the sum (`digest.combine_prefixed`)."""
    return [f"({dtype!r}, {shape!r}, " for dtype, shape in meta]


def _meta(tensors: Sequence[torch.Tensor]) -> list[tuple[str, tuple]]:
    return [(str(t.dtype), tuple(t.shape)) for t in tensors]
