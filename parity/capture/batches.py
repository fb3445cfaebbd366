"""Data taken apart at capture: batch fields, row digests, target histograms, and DataLoader/dataset descriptions.

Per step everything stays on the batch's device until the recorder's single host transfer; the
dataset description runs once per DataLoader, at construction, and saves and restores every RNG it
could disturb so that recording never changes what the trainer computes.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch

from parity.capture import digest, metadata

#: Mapping keys that name the target field (compared case-insensitively).
TARGET_KEYS = ("labels", "label", "target", "targets", "y", "class", "classes", "cls")
#: A target with more distinct values than this gets no histogram (it is not a class id).
MAX_CLASSES = 1024
#: Device-side histogram bins cover target ids in [_BIN_LOW, _BIN_LOW + _BINS); -100 (ignore_index) fits.
_BIN_LOW = -128
_BINS = MAX_CLASSES + 128
#: Raw dataset items digested by index at loader creation, and the time allowed for fetching them.
RAW_ITEMS = 256
RAW_SECONDS = 2.0

#: Containers of non-scalar items longer than this are not digested (about 25 us an item: keep it under ~0.5 s).
#: Largest Arrow table (a HF dataset's rows) digested as a dataset attribute; a larger one is memory-mapped
#: from disk more often than not, and reading it whole at capture start would cost seconds.
MAX_ARROW_BYTES = 256 << 20
MAX_ITEMS = 20_000

_INTEGER_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


# -- batch fields ---------------------------------------------------------------------------------
def _children(obj: Any) -> list[tuple[str, Any]] | None:
    """Named children of a container, or None for a leaf."""
    if isinstance(obj, Mapping):
        return [(str(k), v) for k, v in obj.items()]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return list(zip(obj._fields, obj))
    if isinstance(obj, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    return None


def split_fields(batch: Any) -> list[tuple[str, torch.Tensor]]:
    """The batch's tensors (no grad) under dotted field names; a bare tensor is field "0"."""
    if isinstance(batch, torch.Tensor):
        return [] if batch.requires_grad else [("0", batch)]
    out: list[tuple[str, torch.Tensor]] = []
    stack: list[tuple[str, Any]] = [("", batch)]
    seen: set[int] = set()
    while stack:
        prefix, obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            if not obj.requires_grad:
                out.append((prefix, obj))
            continue
        children = _children(obj)
        if children is None or id(obj) in seen:  # a leaf, or a container met twice (cycles)
            continue
        seen.add(id(obj))
        # Pushed in reverse so fields come out in the container's own order.
        stack.extend((f"{prefix}.{name}" if prefix else name, child) for name, child in reversed(children))
    return out


def find_target(batch: Any) -> tuple[str, torch.Tensor] | None:
    """The batch's integer target field: a well-known Mapping key, else the last of >= 2 tensors."""
    if isinstance(batch, Mapping):
        for key, value in batch.items():
            if isinstance(key, str) and key.lower() in TARGET_KEYS and isinstance(value, torch.Tensor):
                return (key, value) if value.dtype in _INTEGER_DTYPES else None
        return None
    if not isinstance(batch, (list, tuple)):
        return None
    children = _children(batch) or []
    if sum(isinstance(v, torch.Tensor) for _, v in children) < 2:
        return None
    name, last = children[-1]
    return (name, last) if isinstance(last, torch.Tensor) and last.dtype in _INTEGER_DTYPES else None


def _leading_size(fields: list[tuple[str, torch.Tensor]]) -> int | None:
    sizes = Counter(t.shape[0] for _, t in fields if t.dim() >= 1)
    return sizes.most_common(1)[0][0] if sizes else None


def samples_sum(fields: list[tuple[str, torch.Tensor]]) -> torch.Tensor | None:
    """Sum over rows of the rows' digests (all fields sharing the batch's leading size), 0-d int64, on device."""
    n = _leading_size(fields)
    rows = [(name, t) for name, t in fields if t.dim() >= 1 and t.shape[0] == n]
    if not rows:
        return None
    devices = {t.device for _, t in rows}
    if len(devices) > 1:  # fields split across devices: bring them to the first one's
        first = rows[0][1].device
        rows = [(name, t.to(first)) for name, t in rows]
    return digest.row_digests(rows).sum()


class LabelCounts:
    """A target field's histogram, counted on its device into fixed bins (no sync): the counts come
    to the host with the step's single transfer. Ids outside the bins fall back to `torch.unique`
    on a kept copy, which costs one extra small host copy for that step only."""

    def __init__(self, field: str, target: torch.Tensor) -> None:
        self.field = field
        values = target.detach().reshape(-1).to(torch.int64)
        index = values - _BIN_LOW
        outside = (index < 0) | (index >= _BINS)
        index = torch.where(outside, torch.full_like(index, _BINS), index)
        counts = torch.zeros(_BINS + 1, dtype=torch.int64, device=values.device)
        counts.scatter_add_(0, index, torch.ones_like(index))
        self.bins = digest.HostCopy(counts)
        # A copy, because the trainer may rewrite its targets in place before the step is written.
        self._values = values.clone() if values.device.type != "cpu" else values
        self._fallback: dict[int, int] | None = None
        if self.bins.value is not None and int(self.bins.value[_BINS]):
            self._fallback = _unique_counts(values)
        elif self.bins.value is not None:
            self._values = None

    def counts(self) -> dict[int, int]:
        """{target id: count}; call after the step's resolution."""
        if self._fallback is not None:
            return self._fallback
        bins = self.bins.value
        assert bins is not None, "LabelCounts.counts() before resolution"
        if int(bins[_BINS]):
            self._fallback = _unique_counts(self._values)
            return self._fallback
        nonzero = torch.nonzero(bins[:_BINS]).reshape(-1).tolist()
        return {i + _BIN_LOW: int(bins[i]) for i in nonzero}


def _unique_counts(values: torch.Tensor) -> dict[int, int]:
    ids, counts = torch.unique(values, return_counts=True)
    return dict(zip(ids.cpu().tolist(), counts.cpu().tolist()))


def label_histogram(parts: list[LabelCounts]) -> dict | None:
    """{"field", "hist": {str(id): count}} summed over a step's batches, or None past MAX_CLASSES ids."""
    if not parts:
        return None
    total: Counter[int] = Counter()
    for part in parts:
        total.update(part.counts())
    if len(total) > MAX_CLASSES:
        return None
    return {"field": parts[0].field, "hist": {str(k): total[k] for k in sorted(total)}}


class LoaderBatch:
    """What one fetched DataLoader batch contributes to its step: the order-sensitive digest of all
    its tensors, one digest per field, the rows' order-insensitive sum, the target counts and the
    loader's epoch. Construction only launches device work; nothing here synchronises."""

    def __init__(self, batch: Any, tensors: list[torch.Tensor], epoch: int | None, with_digests: bool) -> None:
        self.epoch = epoch
        self.loader: digest.PendingDigest | None = None
        self.fields: dict[str, digest.PendingDigest] = {}
        self.samples: digest.HostCopy | None = None
        self.labels: LabelCounts | None = None
        if not with_digests:
            return
        if not tensors:
            return
        self.loader = digest.PendingDigest(tensors, weighted=True)
        fields = split_fields(batch)
        # A field's digest is its tensor's share of the loader digest: each tensor is summed once.
        position = {id(t): i for i, t in enumerate(tensors)}
        self.fields = {name: self.loader.part(position[id(t)]) if id(t) in position else digest.PendingDigest([t], weighted=True)
                       for name, t in fields}
        total = samples_sum(fields)
        self.samples = digest.HostCopy(total) if total is not None else None
        target = find_target(batch)
        if target is not None and not target[1].requires_grad:
            self.labels = LabelCounts(*target)


# -- DataLoader and dataset descriptions ----------------------------------------------------------
def qualified_name(obj: Any) -> str | None:
    """module.qualname of a class, function or callable object; None for None."""
    if obj is None:
        return None
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"


def _collate_name(fn: Any) -> str | None:
    from torch.utils.data._utils.collate import default_collate, default_convert

    if fn is default_collate:
        return "default_collate"
    if fn is default_convert:
        return "default_convert"
    return qualified_name(fn)


def describe_loader(loader: torch.utils.data.DataLoader) -> dict[str, Any]:
    """Every DataLoader setting plus its dataset's description (see schema.META_DATALOADERS)."""
    generator = getattr(loader, "generator", None)
    worker_init = getattr(loader, "worker_init_fn", None)
    return {
        "class": qualified_name(type(loader)),
        "batch_size": loader.batch_size,
        "shuffle": isinstance(loader.sampler, torch.utils.data.RandomSampler),
        "sampler": qualified_name(type(loader.sampler)),
        "batch_sampler": qualified_name(type(loader.batch_sampler)) if loader.batch_sampler is not None else None,
        "num_workers": loader.num_workers,
        "drop_last": loader.drop_last,
        "collate_fn": _collate_name(loader.collate_fn),
        "pin_memory": loader.pin_memory,
        "persistent_workers": loader.persistent_workers,
        "prefetch_factor": loader.prefetch_factor,
        "timeout": loader.timeout,
        "worker_init_fn": getattr(worker_init, "__qualname__", None) or (qualified_name(worker_init) if worker_init else None),
        "generator_seed": generator.initial_seed() if isinstance(generator, torch.Generator) else None,
        "dataset": describe_dataset(loader.dataset),
    }


def describe_dataset(dataset: Any) -> dict[str, Any]:
    """Class, length, raw items by index and data attributes of a dataset; never raises."""
    try:
        length: int | None = len(dataset)
    except Exception:  # IterableDatasets without __len__, or a __len__ that raises
        length = None
    out: dict[str, Any] = {"class": qualified_name(type(dataset)), "len": length, "raw": None,
                           "attrs": dataset_attrs(dataset)}
    indexable = hasattr(dataset, "__getitem__") and length is not None \
        and not isinstance(dataset, torch.utils.data.IterableDataset)
    if indexable:
        out["raw"], reason = raw_items_digest(dataset, min(length, RAW_ITEMS))
        if reason:
            out["raw_error"] = reason
    return out


def _value_parts(obj: Any, depth: int = 0) -> list[object] | None:
    """Digestable parts of a data value (tensors, arrays, numbers, strings and containers of them);
    None when the value holds something else (a model, a file handle, a tokenizer)."""
    if isinstance(obj, torch.Tensor):
        return [digest.digest_tensors([obj])]
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return ["object-array", obj.shape, repr(obj.tolist())]
        return [digest.digest_tensors([torch.from_numpy(np.ascontiguousarray(obj).view(np.uint8))]), str(obj.dtype), obj.shape]
    if isinstance(obj, (bool, int, float, complex, str, bytes, np.generic)) or obj is None:
        return [type(obj).__name__, repr(obj)]
    if depth > 4:
        return None
    if type(obj).__name__ in ("DataFrame", "Series") and hasattr(obj, "to_numpy"):
        columns = list(getattr(obj, "columns", [getattr(obj, "name", None)]))
        values = _value_parts(obj.to_numpy(), depth + 1)
        return None if values is None else [type(obj).__name__, repr(columns), *values]
    if isinstance(obj, Mapping):
        parts: list[object] = ["map"]
        for key, value in obj.items():
            sub = _value_parts(value, depth + 1)
            if sub is None:
                return None
            parts += [repr(key), *sub]
        return parts
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        if items and all(isinstance(x, (bool, int, float, str)) for x in items):
            return [type(obj).__name__, repr(list(items))]  # one repr: fast for long lists of scalars
        if len(items) > MAX_ITEMS:
            return None
        parts = [type(obj).__name__, len(items)]
        for item in items:
            sub = _value_parts(item, depth + 1)
            if sub is None:
                return None
            parts += sub
        return parts
    arrow = _arrow_table(obj)
    if arrow is not None:
        return _arrow_parts(arrow)
    if type(obj).__module__.startswith("PIL.") and hasattr(obj, "mode"):
        return ["image", obj.mode, *_value_parts(np.asarray(obj), depth + 1)]
    return None


def _arrow_table(obj: Any) -> Any:
    """The pyarrow Table/RecordBatch behind `obj` (itself, or the one a HF `datasets` table wraps), else None."""
    inner = getattr(obj, "table", None) if type(obj).__module__.startswith("datasets.") else obj
    module = type(inner).__module__
    return inner if module.startswith("pyarrow") and hasattr(inner, "column_names") and hasattr(inner, "nbytes") else None


def _arrow_parts(table: Any) -> list[object] | None:
    """A HF `datasets.Dataset`'s prepared rows live in an Arrow table, not in tensors: digest its schema and
    the bytes of every column buffer (in memory, so cheap; a table over MAX_ARROW_BYTES is not read)."""
    import hashlib

    if table.nbytes > MAX_ARROW_BYTES:
        return None
    h = hashlib.blake2b(digest_size=8)
    for column in table.columns:
        for chunk in getattr(column, "chunks", [column]):
            for buffer in chunk.buffers():
                h.update(b"-" if buffer is None else b"%d:" % buffer.size + memoryview(buffer))
    return ["arrow", str(table.schema), table.num_rows, h.hexdigest()]


def _attr_value_parts(value: Any) -> list[object] | None:
    # Scalars are settings (an augmentation strength), not prepared data: only containers count.
    if isinstance(value, (bool, int, float, complex, str, bytes, np.generic)) or value is None:
        return None
    return _value_parts(value)


def dataset_attrs(dataset: Any, prefix: str = "", depth: int = 0) -> dict[str, str]:
    """{attribute name: digest} of the data a dataset instance holds itself, independent of transforms.
    Wrapped datasets (Subset, ConcatDataset, anything with a `dataset`/`datasets` attribute) are
    described under dotted names ("dataset.features"); Subset's `indices` is one of its own attributes."""
    out: dict[str, str] = {}
    try:
        items = list(vars(dataset).items())
    except TypeError:  # no __dict__ (slots, extension types)
        return out
    for name, value in items:
        key = f"{prefix}{name}"
        try:
            if isinstance(value, torch.utils.data.Dataset) and depth < 3:
                out.update(dataset_attrs(value, f"{key}.", depth + 1))
                continue
            if isinstance(value, (list, tuple)) and value and depth < 3 \
                    and all(isinstance(d, torch.utils.data.Dataset) for d in value):
                for i, inner in enumerate(value):
                    out.update(dataset_attrs(inner, f"{key}.{i}.", depth + 1))
                continue
            parts = _attr_value_parts(value)
        except Exception:  # an attribute that cannot be read as data is simply not data
            continue
        if parts is not None:
            out[key] = digest.combine(parts)
    return out


# -- raw items, with every RNG put back -----------------------------------------------------------
def _generator_states(dataset: Any) -> list[tuple[Callable[[Any], None], Any]]:
    """(restore, state) for the global RNGs and for generators the dataset holds itself."""
    saved: list[tuple[Callable[[Any], None], Any]] = [
        (torch.default_generator.set_state, torch.default_generator.get_state()),
        # The global instances' own methods: `np.random.set_state`/`random.setstate` may be turned into
        # no-ops by a resume control, and a restore that does nothing would change the trainer's results.
        (np.random.mtrand._rand.set_state, np.random.mtrand._rand.get_state()),
        (random._inst.setstate, random._inst.getstate()),  # type: ignore[attr-defined]
    ]
    if metadata.cuda_in_use():
        saved += [(g.set_state, g.get_state()) for g in torch.cuda.default_generators]
    for value in getattr(dataset, "__dict__", {}).values():
        if isinstance(value, torch.Generator):
            saved.append((value.set_state, value.get_state()))
        elif isinstance(value, np.random.Generator):
            bits = value.bit_generator
            saved.append((lambda s, bits=bits: setattr(bits, "state", s), bits.state))
        elif isinstance(value, np.random.RandomState):
            saved.append((value.set_state, value.get_state()))
        elif isinstance(value, random.Random):
            saved.append((value.setstate, value.getstate()))
    return saved


def raw_items_digest(dataset: Any, n: int) -> tuple[dict[str, Any] | None, str | None]:
    """({"ordered", "set", "n"}, None) for the first n items by index, or (None, reason).

    Items may draw random numbers (augmentation in __getitem__): every RNG is restored afterwards,
    so the trainer's own draws are the same as without capture."""
    saved = _generator_states(dataset)
    item_digests: list[str] = []
    reason: str | None = None
    start = time.perf_counter()
    try:
        for index in range(n):
            parts = _value_parts(dataset[index])
            item_digests.append(digest.combine(parts if parts is not None else ["opaque", index]))
            if time.perf_counter() - start > RAW_SECONDS:
                reason = f"__getitem__ slower than {RAW_SECONDS:g} s for {n} items"
                break
    except Exception as exc:
        reason = f"__getitem__ raised {type(exc).__name__}"
    finally:
        for restore, state in saved:
            restore(state)
    if reason is not None:
        return None, reason
    total = sum(int(d, 16) for d in item_digests)
    return {"ordered": digest.combine(item_digests), "set": digest.hex64(total), "n": len(item_digests)}, None
