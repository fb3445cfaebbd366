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
import sys
import zlib
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from parity.capture import fused

#: Recorded in every trace header; traces with different digest algorithms cannot be compared.
DIGEST_VERSION = "sum64+wsum64-splitmix/2"

_MASK64 = (1 << 64) - 1
_INT_VIEW = fused.INT_VIEW


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


def local_shard(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's own shard (FSDP2 `fully_shard`, tensor parallel), else the tensor itself.

    Digests never gather: each rank digests what it holds, and no collective runs inside capture.
    FSDP2's local shard excludes its padding, so the ranks' element sums add up to the full tensor's."""
    # No DTensor can exist before its module is imported; the check costs a dict lookup otherwise.
    if "torch.distributed.tensor" in sys.modules:
        from torch.distributed.tensor import DTensor

        if isinstance(t, DTensor):
            return t.to_local()
    return t


def local_shards(tensors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """`local_shard` of each tensor, with one import check per list instead of per tensor; the list
    itself when it holds no DTensor (the common case)."""
    if "torch.distributed.tensor" not in sys.modules:
        return tensors
    from torch.distributed.tensor import DTensor

    if not any(isinstance(t, DTensor) for t in tensors):
        return tensors
    return [t.to_local() if isinstance(t, DTensor) else t for t in tensors]


def _element_sum(t: torch.Tensor) -> int | torch.Tensor:
    """The sum, mod 2**64, of each element's bits read as a signed integer of the element's width.

    Unlike sum64's 8-byte words, elements never straddle a shard boundary, so the element sums of the
    shards of a tensor add up to the whole tensor's however it is cut (the layout-independent digest)."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    ints = t.reshape(-1).view(_INT_VIEW[t.element_size()])
    if t.device.type == "cpu":
        with np.errstate(over="ignore"):
            return int(ints.numpy().sum(dtype=np.int64)) & _MASK64
    return ints.sum(dtype=torch.int64)


def _sum_of(t: torch.Tensor, weighted: bool) -> int | torch.Tensor:
    """A CPU tensor's sum as an int now; a device tensor's as a 0-d device tensor (no sync). `t` is a local shard."""
    if t.device.type == "cpu":
        with np.errstate(over="ignore"):
            w = _words_numpy(t)
            return (int(_mix_numpy(w).sum(dtype=np.uint64)) if weighted else int(w.sum())) & _MASK64
    w = _words_torch(t)
    return (_mix_torch(w) if weighted else w).sum()


class PendingDigest:
    """A digest whose device-side sums have been launched but not yet copied to the host.

    Resolving many of them together (`Transfer`, `resolve_all`) costs one device-to-host copy per device,
    so capture never synchronises with the GPU per digest. `sums` holds per tensor an int (summed on the
    host), a 0-d device tensor, or None where `blocks` (positions, device int64 vector) carries the sum.
    """

    __slots__ = ("meta", "sums", "extra", "value", "blocks", "prefixes")

    def __init__(self, tensors: Sequence[torch.Tensor], weighted: bool, extra: Sequence[object] = (),
                 elements: bool = False) -> None:
        # `elements`: per-element sums (`_element_sum`, of local shards) instead of sum64/wsum64 words.
        tensors = local_shards(tensors)
        self.meta = [(str(t.dtype), tuple(t.shape)) for t in tensors]
        self.sums: list[int | torch.Tensor | None] = [_element_sum(t) if elements else _sum_of(t, weighted) for t in tensors]
        self.extra = list(extra)
        self.value: str | None = None
        self.blocks: list[tuple[list[int], torch.Tensor]] = []
        self.prefixes: list[str] | None = None

    def resolve(self) -> None:
        """Set `value` from the resolved sums: `combine` of (dtype, shape, sum) per tensor, then `extra`."""
        prefixes = self.prefixes if self.prefixes is not None else fused.meta_prefixes(self.meta)
        self.value = combine_prefixed(prefixes, self.sums, self.extra)

    @classmethod
    def _from_sums(cls, meta: list, sums: fused.Sums, extra: Sequence[object] = (),
                   prefixes: list[str] | None = None) -> "PendingDigest":
        made = cls.__new__(cls)
        made.meta, made.extra, made.value = meta, list(extra), None
        made.prefixes = prefixes
        made.sums, made.blocks = list(sums[0]), list(sums[1])
        return made

    def part(self, index: int) -> "PendingDigest":
        """The digest of the `index`-th tensor alone, reusing its launched sum: no new device work."""
        if self.blocks:
            raise ValueError("part() of a digest whose sums travel in blocks")
        single = PendingDigest.__new__(PendingDigest)
        single.meta, single.sums, single.extra, single.value, single.blocks = [self.meta[index]], [self.sums[index]], [], None, []
        single.prefixes = None
        return single


#: Tests set it: CPU tensors then take the device (torch) path of `fused.SumPlan`, not numpy's.
FUSED_TORCH_ON_CPU = False


def state_digests(plans: fused.PlanCache, params: Sequence[torch.Tensor], state: Sequence[torch.Tensor],
                  state_extra: Sequence[object] = ()) -> tuple[PendingDigest, PendingDigest, PendingDigest]:
    """The step's `params` and `optim_state` digests (sum64) and `param_sums` (element sums), from few
    kernels per device: each tensor is read once per kind, and the plans are reused across steps.

    Values are identical to `PendingDigest(params, False)`, `PendingDigest(state, False, state_extra)` and
    `PendingDigest(params, False, elements=True)`.
    """
    use_torch = True if FUSED_TORCH_ON_CPU else None
    plan = plans.plan("params", params, local_shards(params), use_torch)
    words, elements = plan.run((fused.WORDS, fused.ELEMENTS))
    state_plan = plans.plan("state", state, local_shards(state), use_torch)
    (state_words,) = state_plan.run((fused.WORDS,))
    return (PendingDigest._from_sums(plan.meta, words, prefixes=plan.prefixes),
            PendingDigest._from_sums(state_plan.meta, state_words, state_extra, prefixes=state_plan.prefixes),
            PendingDigest._from_sums(plan.meta, elements, prefixes=plan.prefixes))


class HostCopy:
    """An integer device tensor (row-digest sums, label counts) to bring to the host with the step's
    single transfer; a CPU tensor is its own host copy. `value` is the int64 host tensor once resolved."""

    __slots__ = ("tensor", "value")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.value: torch.Tensor | None = tensor.to(torch.int64) if tensor.device.type == "cpu" else None


class Transfer:
    """One step's device values (digest sums, integer copies, float scalars) on their way to the host.

    Construction launches one device-to-host copy per device (asynchronous into pinned memory on CUDA)
    and never waits; `ready` asks without waiting; `finish` waits if needed, resolves the digests and
    copies in place, and returns the scalars as CPU tensors of their own dtypes. So a recorder can write
    a step when its values have arrived, a step late, instead of stalling the GPU queue at every step.
    """

    def __init__(self, pending: Iterable[PendingDigest], scalars: Sequence[torch.Tensor] = (),
                 copies: Iterable[HostCopy] = ()) -> None:
        self._pending = [p for p in pending if p.value is None]
        self._scalars = list(scalars)
        self._host_scalars: list[torch.Tensor | None] = [None] * len(self._scalars)
        self._copies = [c for c in copies if c.value is None]
        # Per device: (pieces, what each piece resolves); flattened into one int64 vector below.
        plans: dict[torch.device, list[tuple[str, Any, torch.Tensor]]] = {}
        for p in self._pending:
            loose = [(i, s) for i, s in enumerate(p.sums) if isinstance(s, torch.Tensor)]
            if loose:
                for device in {s.device for _, s in loose}:
                    here = [(i, s) for i, s in loose if s.device == device]
                    plans.setdefault(device, []).append(("sums", (p, [i for i, _ in here]), torch.stack([s for _, s in here])))
            for positions, vector in p.blocks:
                plans.setdefault(vector.device, []).append(("sums", (p, positions), vector))
        for c in self._copies:
            plans.setdefault(c.tensor.device, []).append(("copy", c, c.tensor.reshape(-1).to(torch.int64)))
        floats: dict[torch.device, list[int]] = {}
        for j, t in enumerate(self._scalars):
            if t.device.type == "cpu":
                self._host_scalars[j] = t
            else:
                floats.setdefault(t.device, []).append(j)
        for device, indices in floats.items():
            # Float scalars travel as the int64 bits of their float64 value (exact for every float
            # dtype); each gets its own dtype back on the host.
            bits = torch.stack([self._scalars[j].detach().reshape(()).to(torch.float64) for j in indices]).view(torch.int64)
            plans.setdefault(device, []).append(("floats", indices, bits))
        self._moving: list[tuple[list[tuple[str, Any, torch.Tensor]], torch.Tensor, Any]] = []
        for device, pieces in plans.items():
            flat = torch.cat([piece for _, _, piece in pieces]) if len(pieces) > 1 else pieces[0][2]
            event = None
            if device.type == "cuda":
                host = flat.to("cpu", non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            else:
                host = flat.cpu()
            self._moving.append((pieces, host, event))

    @property
    def on_host(self) -> bool:
        """Every value was already on the host (CPU tensors): `finish` has nothing to wait for."""
        return all(event is None for _, _, event in self._moving)

    def ready(self) -> bool:
        """True when every copy has arrived (never waits)."""
        return all(event is None or event.query() for _, _, event in self._moving)

    def finish(self) -> list[torch.Tensor]:
        """Wait for the copies, resolve the digests and copies, and return the scalars on the host."""
        for pieces, host, event in self._moving:
            if event is not None:
                event.synchronize()
            offset = 0
            for kind, target, piece in pieces:
                n = piece.numel()
                values = host[offset:offset + n]
                offset += n
                if kind == "sums":
                    p, positions = target
                    for i, v in zip(positions, values.tolist()):
                        p.sums[i] = v & _MASK64
                elif kind == "copy":
                    target.value = values.reshape(target.tensor.shape)
                else:
                    for j, v in zip(target, values.view(torch.float64)):
                        self._host_scalars[j] = v.to(self._scalars[j].dtype)
        self._moving = []
        for p in self._pending:
            p.blocks = []
            p.resolve()
        return self._host_scalars  # type: ignore[return-value]


def resolve_all(pending: Iterable[PendingDigest], scalars: Sequence[torch.Tensor] = (),
                copies: Iterable[HostCopy] = ()) -> list[torch.Tensor]:
    """Resolve digests and `copies` in place and copy `scalars` to the CPU, with one transfer per device."""
    return Transfer(pending, scalars, copies).finish()


def tensor_sums(tensors: Sequence[torch.Tensor], weighted: bool) -> list[int]:
    """One 64-bit sum per tensor (device tensors are reduced on device, moved in one transfer)."""
    pending = PendingDigest(tensors, weighted)
    resolve_all([pending])
    return pending.sums  # type: ignore[return-value]


_SPLITMIX_A = 0xBF58476D1CE4E5B9
_SPLITMIX_B = 0x94D049BB133111EB


def _splitmix(z: torch.Tensor) -> torch.Tensor:
    """The full splitmix64 finaliser on int64 (wrapping arithmetic), used to chain a row's fields.
    CPU tensors go through numpy: torch's CPU int64 kernels are many times slower here."""
    if z.device.type == "cpu":
        with np.errstate(over="ignore"):
            u = z.numpy().view(np.uint64)
            u = (u ^ (u >> np.uint64(30))) * np.uint64(_SPLITMIX_A)
            u = (u ^ (u >> np.uint64(27))) * np.uint64(_SPLITMIX_B)
            return torch.from_numpy((u ^ (u >> np.uint64(31))).view(np.int64))
    z = (z ^ _lshr(z, 30)) * _signed(_SPLITMIX_A)
    z = (z ^ _lshr(z, 27)) * _signed(_SPLITMIX_B)
    return z ^ _lshr(z, 31)


def row_sums(t: torch.Tensor, weighted: bool = True) -> torch.Tensor:
    """One 64-bit sum per row (index along dim 0), as int64 on the tensor's device (no sync).

    Each row's bytes are zero-padded to whole words on their own, and `weighted` mixes each word with
    its position counted from the row's start, so a row digests alike wherever it sits in a batch.
    """
    t = t.detach()
    if t.dim() == 0:
        raise ValueError("row_sums needs a tensor with a leading dimension")
    if not t.is_contiguous():
        t = t.contiguous()
    n = t.shape[0]
    row_bytes = (t[0].numel() if n else 0) * t.element_size()
    raw = t.reshape(-1).view(torch.uint8).reshape(n, row_bytes)
    pad = (-row_bytes) % 8
    if pad:
        raw = torch.cat([raw, raw.new_zeros(n, pad)], dim=1)
    words = raw.view(torch.int64)
    if words.device.type == "cpu":
        with np.errstate(over="ignore"):
            u = words.numpy().view(np.uint64)
            if weighted:
                u = _mix_numpy_rows(u)
            return torch.from_numpy(u.sum(axis=1, dtype=np.uint64).view(np.int64))
    if not weighted:
        return words.sum(dim=1)
    idx = torch.arange(words.shape[1], device=words.device, dtype=torch.int64)
    z = words + idx * _signed(_GOLDEN)
    z = z ^ _lshr(z, 31)
    z = z * _signed(_MIX)
    return (z ^ _lshr(z, 29)).sum(dim=1)


def _mix_numpy_rows(words: np.ndarray) -> np.ndarray:
    """`_mix_numpy` applied to each row of a 2-d uint64 array, positions counted from the row's start."""
    z = words + np.arange(words.shape[1], dtype=np.uint64) * np.uint64(_GOLDEN)
    z ^= z >> np.uint64(31)
    z *= np.uint64(_MIX)
    z ^= z >> np.uint64(29)
    return z


def row_digests(named: Sequence[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """One int64 digest per row combining every named field's row, in order (all share dim 0).

    Each field's row sum is salted with the field's name, dtype and row shape, then chained through
    splitmix64, so swapping one field's values between two rows changes both rows' digests.
    """
    combined: torch.Tensor | None = None
    for name, t in named:
        salt = int(combine([name, str(t.dtype), tuple(t.shape[1:])]), 16)
        mixed = _splitmix(row_sums(t) + _signed(salt))
        combined = mixed if combined is None else _splitmix(combined + mixed)
    if combined is None:
        raise ValueError("row_digests needs at least one field")
    return combined


def hex64(value: int) -> str:
    """A 64-bit integer (any sign, reduced mod 2**64) as 16 hex digits."""
    return f"{value & _MASK64:016x}"


def combine(parts: Iterable[object]) -> str:
    """Fold an ordered sequence of digests/metadata into one 16-hex-digit digest."""
    # One update over the joined reprs hashes exactly the bytes of one update per part and separator.
    return _hash("".join([f"{p!r}\x00" for p in parts]))


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def combine_prefixed(prefixes: Sequence[str], sums: Sequence[object], extra: Sequence[object] = ()) -> str:
    """`combine` of [(dtype, shape, sum) per tensor, *extra] from `fused.meta_prefixes`: the same bytes, hashed
    without building a tuple and its repr per tensor (hundreds per step on a large model)."""
    return _hash("".join([f"{pre}{s!r})\x00" for pre, s in zip(prefixes, sums)] + [f"{p!r}\x00" for p in extra]))


def digest_tensors(tensors: Sequence[torch.Tensor], weighted: bool = False) -> str:
    """Digest of an ordered collection of tensors: values, dtypes and shapes."""
    pending = PendingDigest(tensors, weighted)
    resolve_all([pending])
    return pending.value  # type: ignore[return-value]


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
