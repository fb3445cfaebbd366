"""`data`: what the model trained on, taken apart: DataLoader batches, model inputs, batch fields
(inputs vs targets), the samples seen per epoch regardless of order, target-id histograms, and the
datasets as prepared (raw items by index, the dataset's own data attributes).

From that evidence the check says *what kind* of data difference it is, the way a user debugs it:
labels re-encoded, different samples (data prepared differently), the same samples in a new order,
or the same raw samples turned into different batches (augmentation, transforms, random streams).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from parity.checks.base import Finding, first_mismatch, not_compared
from parity.trace import columns as col
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import LabelCounts, StepView, TraceMeta
from parity.trace.schema import (DL_DATASET, DS_ATTRS, DS_LEN, DS_RAW, F_BATCH, F_EPOCH, F_FIELDS, F_LABELS, F_LOADER,
                                 F_SAMPLES, RAW_N, RAW_ORDERED, RAW_SET)

#: (step field, what it holds) in the order they are looked at; the evidence keys are the field names.
_CHANNELS = ((F_LOADER, "DataLoader batches"), (F_BATCH, "model inputs"))

#: Data kinds, as cause categories (parity.checks.causes.CATEGORIES).
LABELS, CONTENT, ORDER, AUGMENTATION = "labels", "data_content", "data_order", "augmentation"

#: Dataset attributes that hold settings, not data: a changed augmentation strength stored on the
#: dataset is a transform change, not different prepared data.
_SETTING_ATTRS = ("cfg", "config", "conf", "args", "hparams", "params", "settings", "opts", "options", "transform",
                  "transforms", "target_transform", "augment", "augmentation")

_MASK64 = (1 << 64) - 1
#: Evidence key for which DataLoader (its index in META_DATALOADERS) a dataset difference is in:
#: report vocabulary, not the step field of the same spelling.
_LOADER_INDEX = "loader"


def _roots(entries: list[str]) -> list[str]:
    return [e.rpartition(":")[0] for e in entries]


def _same_roots(a: list[str], b: list[str]) -> bool:
    """Model inputs compare only when the same root modules ran: their inputs are the other side's batch."""
    return _roots(a) == _roots(b)


def _fields_at(step: dict[str, Any]) -> dict[str, str] | None:
    batches = step.get(F_FIELDS) or []
    if not batches or not all(isinstance(b, dict) for b in batches):
        return None
    merged: dict[str, str] = {}
    for i, batch in enumerate(batches):
        for name, digest in batch.items():
            merged[name if i == 0 else f"{name}#{i}"] = digest
    return merged


def _differing_fields(a: dict[str, Any], b: dict[str, Any]) -> list[str] | None:
    fa, fb = _fields_at(a), _fields_at(b)
    if fa is None or fb is None:
        return None
    return sorted(n for n in set(fa) | set(fb) if fa.get(n) != fb.get(n))


def _target_field(*steps: dict[str, Any]) -> str | None:
    for step in steps:
        labels = StepView(step).labels
        if labels is not None:
            return labels.field
    return None


def _label_totals(trace: Trace, n: int) -> Counter:
    total: Counter = Counter()
    for step in trace.steps[:n]:
        labels = LabelCounts.from_record(step.get(F_LABELS))
        if labels is not None:
            total.update(labels.hist)
    return total


def _epoch_sums(trace: Trace, n: int) -> dict[int, tuple[int, int]]:
    """Per epoch: (sum of the steps' order-insensitive sample digests mod 2**64, steps in the epoch)."""
    columns = col.step_columns(trace)
    if columns.regular(col.EPOCH, col.SAMPLES):
        valid = (columns.ep_state[:n] == col.PRESENT) & (columns.smp_state[:n] == col.PRESENT)
        epochs, values = columns.ep[:n][valid], columns.smp_bits[:n][valid]
        order = np.argsort(epochs, kind="stable")
        keys, starts, per_epoch = np.unique(epochs[order], return_index=True, return_counts=True)
        totals = np.add.reduceat(values[order], starts) if len(starts) else values[:0]  # uint64: wraps mod 2**64
        return {int(e): (int(t), int(c)) for e, t, c in zip(keys, totals, per_epoch)}
    sums: dict[int, tuple[int, int]] = {}
    for step in trace.steps[:n]:
        epoch, samples = step.get(F_EPOCH), step.get(F_SAMPLES)
        if not isinstance(epoch, int) or not isinstance(samples, str):
            continue
        try:
            value = int(samples, 16)
        except ValueError:
            continue
        total, count = sums.get(epoch, (0, 0))
        sums[epoch] = ((total + value) & _MASK64, count + 1)
    return sums


def _dataset_differences(baseline: Trace, candidate: Trace) -> dict[str, Any] | None:
    """How the datasets as prepared differ (None when neither side described its datasets)."""
    la, lb = TraceMeta.of(baseline).dataloaders, TraceMeta.of(candidate).dataloaders
    if not la or not lb:
        return None
    out: dict[str, Any] = {"data_attrs": [], "setting_attrs": [], "raw": [], "length": [], "loaders": min(len(la), len(lb))}
    for i, (a, b) in enumerate(zip(la, lb)):
        da, db = a.get(DL_DATASET) or {}, b.get(DL_DATASET) or {}
        if da.get(DS_LEN) != db.get(DS_LEN):
            out["length"].append({_LOADER_INDEX: i, "baseline": da.get(DS_LEN), "candidate": db.get(DS_LEN)})
        attrs_a, attrs_b = da.get(DS_ATTRS) or {}, db.get(DS_ATTRS) or {}
        for name in sorted(set(attrs_a) | set(attrs_b)):
            if attrs_a.get(name) != attrs_b.get(name):
                bucket = "setting_attrs" if name.lower().strip("_") in _SETTING_ATTRS else "data_attrs"
                out[bucket].append(f"loader {i}: {name}")
        raw_a, raw_b = da.get(DS_RAW), db.get(DS_RAW)
        if isinstance(raw_a, dict) and isinstance(raw_b, dict) and raw_a.get(RAW_N) == raw_b.get(RAW_N):
            if raw_a.get(RAW_SET) != raw_b.get(RAW_SET):
                out["raw"].append({_LOADER_INDEX: i, "kind": "items differ", "n": raw_a.get(RAW_N)})
            elif raw_a.get(RAW_ORDERED) != raw_b.get(RAW_ORDERED):
                out["raw"].append({_LOADER_INDEX: i, "kind": "same items, other index order", "n": raw_a.get(RAW_N)})
    return out


#: DataLoader settings that decide which samples form each batch (a DistributedSampler shards them).
_SAMPLING_KEYS = ("sampler", "batch_sampler", "batch_size", "shuffle", "drop_last", "generator_seed")


def _short_class(value: Any) -> Any:
    return value.rsplit(".", 1)[-1] if isinstance(value, str) and "." in value else value


def _sampling_differences(baseline: Trace, candidate: Trace) -> list[str]:
    """"loader i: key a -> b" for each sampling setting that differs between the loaders built in order."""
    la, lb = TraceMeta.of(baseline).dataloaders, TraceMeta.of(candidate).dataloaders
    out = []
    for i, (a, b) in enumerate(zip(la or [], lb or [])):
        for key in _SAMPLING_KEYS:
            if a.get(key) != b.get(key):
                out.append(f"loader {i}: {key} {_short_class(a.get(key))} -> {_short_class(b.get(key))}")
    return out


def _classify(baseline: Trace, candidate: Trace, first: int, loader_first: int | None, n: int,
              loader_compared: bool) -> dict[str, Any]:
    """What kind of data difference this is, with the evidence that decides it."""
    a, b = baseline.steps[first], candidate.steps[first]
    evidence: dict[str, Any] = {}
    differing = _differing_fields(a, b) if loader_first == first else None
    target = _target_field(a, b)
    if differing is not None:
        evidence["fields_differing"] = differing
    if target is not None:
        evidence["target_field"] = target
    rng_a, rng_b = TraceMeta.of(baseline).rng_at_first_batch, TraceMeta.of(candidate).rng_at_first_batch
    if rng_a is not None and rng_b is not None:
        evidence["rng_at_first_batch"] = "same" if rng_a == rng_b else \
            "differs (" + ", ".join(k for k in sorted(set(rng_a) | set(rng_b)) if rng_a.get(k) != rng_b.get(k)) + ")"
    if target is not None and differing == [target]:
        ta, tb = _label_totals(baseline, n), _label_totals(candidate, n)
        permuted = ta != tb and sorted(ta.values()) == sorted(tb.values())
        evidence["label_histogram"] = {"baseline": dict(sorted(ta.items())), "candidate": dict(sorted(tb.items()))}
        how = ("the same label counts under other ids: the label mapping (vocabulary order/encoding) changed"
               if permuted else "the targets differ while every input field is identical")
        return {"kind": LABELS, "how": how, **evidence}
    datasets = _dataset_differences(baseline, candidate)
    if datasets is not None:
        evidence["datasets"] = {k: v for k, v in datasets.items() if v}
        if datasets["data_attrs"] or datasets["length"]:
            what = ", ".join(datasets["data_attrs"][:4]) or "dataset length"
            return {"kind": CONTENT, "how": f"the datasets hold different prepared data ({what})", **evidence}
        if datasets["raw"] and any(r["kind"] == "items differ" for r in datasets["raw"]) and not datasets["setting_attrs"] \
                and evidence.get("rng_at_first_batch") == "same":
            # Same RNG state, same data attributes, different items by index: the item transform differs.
            return {"kind": AUGMENTATION, "how": "the same prepared data yields different items by index: the "
                    "dataset's transform/augmentation differs", **evidence}
    sums_a, sums_b = _epoch_sums(baseline, n), _epoch_sums(candidate, n)
    epochs = [e for e in sorted(set(sums_a) & set(sums_b)) if sums_a[e][1] == sums_b[e][1]]
    if epochs:
        same = [e for e in epochs if sums_a[e][0] == sums_b[e][0]]
        evidence["epochs_compared"] = len(epochs)
        evidence["epochs_with_same_samples"] = len(same)
        if len(same) == len(epochs):
            return {"kind": ORDER, "how": f"every compared epoch ({len(epochs)}) holds the same samples in another "
                    "order (sampler, shuffling or its seed differs)", **evidence}
    if datasets is not None and not datasets["data_attrs"] and not datasets["length"]:  # the same prepared data
        sampling = _sampling_differences(baseline, candidate)
        if sampling:
            evidence["sampling"] = sampling
            return {"kind": ORDER, "how": "the datasets hold the same prepared data, drawn into batches differently ("
                    + "; ".join(sampling[:4]) + "): a sampling, sharding or batching change", **evidence}
        return {"kind": AUGMENTATION, "how": "the datasets hold the same prepared data, but the batches differ: "
                "augmentation, transforms or their random streams (workers, seeds) differ", **evidence}
    if not loader_compared:
        # Without DataLoader batches on both sides nothing tells raw data, its preparation and its
        # batching apart: say so rather than name one of them.
        return {"kind": CONTENT, "how": "no DataLoader batches were recorded (the loop feeds the model itself), so "
                "the data, its preparation and its batching cannot be told apart: the model's inputs differ", **evidence}
    if loader_first is None:
        return {"kind": AUGMENTATION, "how": "the DataLoader's batches are identical, the model's inputs are not: "
                "augmentation or noise applied in the training loop differs", **evidence}
    return {"kind": CONTENT, "how": "different samples or different transforms (the datasets were not described, "
            "so prepared data and augmentation cannot be told apart)", **evidence}


def _rebatched(baseline: Trace, candidate: Trace) -> int | None:
    """The number of compared updates when every one trained on the same samples, batched differently
    (micro-batches of an accumulation window joined or split: 2x16 vs 1x32); else None."""
    n = min(len(baseline.steps), len(candidate.steps))
    pair = col.regular_pair(baseline, candidate, col.SAMPLES, col.LOADER)
    if pair is not None:
        ca, cb = pair
        sa, sb = ca.smp_state[:n], cb.smp_state[:n]
        if not n or ((sa == col.ABSENT) | (sa != sb) | (ca.smp_bits[:n] != cb.smp_bits[:n])
                     | (ca.smp_len[:n] != cb.smp_len[:n])).any():
            return None
        return n if (col.counts(ca.ld_off, n) != col.counts(cb.ld_off, n)).any() else None
    pairs = [(baseline.steps[i], candidate.steps[i]) for i in range(n)]
    if not pairs or any(a.get(F_SAMPLES) is None or a.get(F_SAMPLES) != b.get(F_SAMPLES) for a, b in pairs):
        return None
    if not any(len(a.get(F_LOADER) or ()) != len(b.get(F_LOADER) or ()) for a, b in pairs):
        return None
    return n


def _first_mismatch(baseline: Trace, candidate: Trace, field: str) -> tuple[int | None, int]:
    """first_mismatch of the loader batches or the model inputs (compared where the same roots ran)."""
    pair = col.regular_pair(baseline, candidate, col.LOADER if field == F_LOADER else col.BATCH)
    if pair is None:
        return first_mismatch(baseline, candidate, lambda s: s.get(field) or None,
                              comparable=_same_roots if field == F_BATCH else None)
    ca, cb = pair
    n = min(ca.n, cb.n)
    if field == F_LOADER:
        off_a, off_b, bits_a, bits_b, len_a, len_b = ca.ld_off, cb.ld_off, ca.ld_bits, cb.ld_bits, ca.ld_len, cb.ld_len
        both = (col.counts(off_a, n) > 0) & (col.counts(off_b, n) > 0)
    else:
        off_a, off_b, bits_a, bits_b, len_a, len_b = ca.bt_off, cb.bt_off, ca.bt_bits, cb.bt_bits, ca.bt_len, cb.bt_len
        root_a, root_b = col.joint_column(ca, cb, "roots", ca.bt_root, cb.bt_root)
        both = (col.counts(off_a, n) > 0) & (col.counts(off_b, n) > 0) \
            & col.lists_equal(off_a, off_b, n, lambda ia, ib: root_a[ia] == root_b[ib])
    same = col.lists_equal(off_a, off_b, n, lambda ia, ib: (bits_a[ia] == bits_b[ib]) & (len_a[ia] == len_b[ib]))
    if field == F_BATCH:
        same &= col.lists_equal(off_a, off_b, n, lambda ia, ib: ca.bt_colon[ia] == cb.bt_colon[ib])
    return col.first_difference(both, ~same)


def check_data(baseline: Trace, candidate: Trace) -> Finding:
    """IDENTICAL when the loader produced bit-identical batches in the same order and the model's root
    forward saw bit-identical inputs (order-sensitive digests); each part is compared where both sides
    recorded it. When they differ, `evidence["kind"]` says which kind of data difference it is."""
    evidence: dict = {"strength": "exact bits (order-sensitive wsum64 digest)"}
    firsts = {}
    for field, what in _CHANNELS:
        first, compared = _first_mismatch(baseline, candidate, field)
        evidence[f"{field}_steps_compared"] = compared
        if compared and first is not None:
            firsts[field] = first
            evidence[field] = {"step": first, "baseline_digest": baseline.steps[first][field],
                               "candidate_digest": candidate.steps[first][field]}
    if not evidence["loader_steps_compared"] and not evidence["batch_steps_compared"]:
        return not_compared("data", "no batch digests on both sides (capture level minimal, no DataLoader and no "
                                    "forward of a trainable root module with grad enabled)")
    evidence["steps_compared"] = max(evidence["loader_steps_compared"], evidence["batch_steps_compared"])
    if not firsts:
        seen = " and ".join(what for field, what in _CHANNELS if evidence[f"{field}_steps_compared"])
        return Finding("data", schema.IDENTICAL, f"same {seen} in the same order for all {evidence['steps_compared']} "
                       "compared steps", None, evidence)
    rebatched = _rebatched(baseline, candidate)
    if rebatched is not None:
        evidence.update(strength="exact bits of each update's samples (order-insensitive sum of row digests)",
                        rebatched=True)
        return Finding("data", schema.IDENTICAL, f"the same samples in each of the {rebatched} compared updates, "
                       "split into a different number of micro-batches", None, evidence)
    first = min(firsts.values())
    n = min(len(baseline.steps), len(candidate.steps))
    kind = _classify(baseline, candidate, first, firsts.get(F_LOADER), n, bool(evidence["loader_steps_compared"]))
    evidence.update(kind)
    where = "the DataLoader's batches" if firsts.get(F_LOADER) == first else "the model's inputs"
    return Finding("data", schema.DIFFERENT, f"{where} differ from step {first}: {kind['how']}", first, evidence)
