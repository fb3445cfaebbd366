"""Exact, cheap digests of tensors, computed where the tensors live.

Two strengths, both bit-exact on values:
  * ``sum64``: the tensor's bytes, zero-padded to 8-byte words, summed modulo 2**64. Any change of a
    single word changes it; it ignores permutations, so it is used for state whose positions the
    architecture fixes (parameters, optimizer moments).
  * ``wsum64``: each word is first mixed with its position (add i*GOLDEN, then a splitmix64-style
    xor-shift-multiply finaliser) and the mixed words are summed, so element order matters. Linear
    position weights are not enough: swapping words that differ by 2**63 cancels modulo 2**64. Used
    for batches, where reordering *is* the difference to catch.
Both are defined on the bytes, so a CPU tensor and a CUDA tensor with the same bits digest alike.
Integer sums are associative, so the device's reduction order cannot change a digest.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Iterable, Sequence

import numpy as np
import torch

_MASK64 = (1 << 64) - 1
_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _words_numpy(t: torch.Tensor) -> np.ndarray:
    """The CPU tensor's bytes as little-endian int64 words (zero-padded)."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    raw = t.reshape(-1).view(_INT_VIEW[t.element_size()]).numpy().view(np.uint8)
    pad = (-raw.size) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros(pad, dtype=np.uint8)])
    return raw.view(np.int64)


def _words_torch(t: torch.Tensor) -> torch.Tensor:
    """The device tensor's bytes as int64 words (zero-padded), without leaving the device."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    raw = t.reshape(-1).view(torch.uint8)
    pad = (-raw.numel()) % 8
    if pad:
        raw = torch.cat([raw, raw.new_zeros(pad)])
    return raw.view(torch.int64)


_GOLDEN = 0x9E3779B97F4A7C15
_MIX = 0xBF58476D1CE4E5B9


def _mix_numpy(words: np.ndarray) -> np.ndarray:
    z = words.view(np.uint64) + np.arange(words.size, dtype=np.uint64) * np.uint64(_GOLDEN)
    z ^= z >> np.uint64(31)
    z *= np.uint64(_MIX)
    z ^= z >> np.uint64(29)
    return z


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def _lshr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift on int64 (torch shifts signed integers arithmetically)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix_torch(words: torch.Tensor) -> torch.Tensor:
    idx = torch.arange(words.numel(), device=words.device, dtype=torch.int64)
    z = words + idx * _signed(_GOLDEN)
    z = z ^ _lshr(z, 31)
    z = z * _signed(_MIX)
    return z ^ _lshr(z, 29)


def tensor_sums(tensors: Sequence[torch.Tensor], weighted: bool) -> list[int]:
    """One 64-bit sum per tensor; device tensors are reduced on device and moved in one transfer."""
    out: list[int | None] = [None] * len(tensors)
    on_device: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
    with np.errstate(over="ignore"):
        for i, t in enumerate(tensors):
            if t.device.type == "cpu":
                w = _words_numpy(t)
                s = int(_mix_numpy(w).sum(dtype=np.uint64)) if weighted else int(w.sum())
                out[i] = s & _MASK64
            else:
                w = _words_torch(t)
                if weighted:
                    w = _mix_torch(w)
                on_device.setdefault(t.device, []).append((i, w.sum()))
    for items in on_device.values():
        host = torch.stack([s for _, s in items]).cpu().tolist()
        for (i, _), s in zip(items, host):
            out[i] = s & _MASK64
    return out  # type: ignore[return-value]


def combine(parts: Iterable[object]) -> str:
    """Fold an ordered sequence of digests/metadata into one 16-hex-digit digest."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def digest_tensors(tensors: Sequence[torch.Tensor], weighted: bool = False) -> str:
    """Digest of an ordered collection of tensors: values, dtypes and shapes."""
    sums = tensor_sums(tensors, weighted)
    return combine((str(t.dtype), tuple(t.shape), s) for t, s in zip(tensors, sums))


def digest_bytes(data: bytes) -> str:
    """Digest of a small byte string (RNG states, pickled Python objects)."""
    return f"{zlib.crc32(data):08x}"


def float_bits(value: float | torch.Tensor) -> dict:
    """Exact bits of a scalar, in its own dtype, plus its value (strings for non-finite values)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().reshape(-1)[:1].cpu()
        dtype = str(t.dtype).replace("torch.", "")
        size = t.element_size()
        bits = int(t.view(_INT_VIEW[size]).item()) & ((1 << (8 * size)) - 1)
        val = float(t.item())
    else:
        dtype, size = "float64", 8
        val = float(value)
        bits = struct.unpack("<Q", struct.pack("<d", val))[0]
    return {"bits": f"{bits:0{2 * size}x}", "dtype": dtype, "value": json_float(val)}


def json_float(x: float) -> float | str:
    """A float for JSON written with allow_nan=False: non-finite values become explicit strings."""
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return x
