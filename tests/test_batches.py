"""Data taken apart: batch fields, row digests, target histograms, and dataset/DataLoader descriptions."""

from __future__ import annotations

import collections
import dataclasses
import random

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from parity.capture import batches, digest


def _resolved(*copies: digest.HostCopy) -> None:
    digest.resolve_all([], (), copies)


def _labels(values: list[int]) -> dict | None:
    part = batches.LabelCounts("y", torch.tensor(values))
    _resolved(part.bins)
    return batches.label_histogram([part])


Pair = collections.namedtuple("Pair", "image target")


@dataclasses.dataclass
class Features:
    ids: torch.Tensor
    mask: torch.Tensor


class _Encoding(collections.UserDict):
    """Stands in for transformers' BatchEncoding, a UserDict."""


# -- fields and targets ---------------------------------------------------------------------------
def test_split_fields_names_every_container_kind():
    t = torch.zeros(2)
    batch = {"x": Features(t, t + 1), "y": [t + 2, Pair(t + 3, t + 4)], "note": "text",
             "w": torch.ones(2, requires_grad=True)}
    names = [name for name, _ in batches.split_fields(batch)]
    assert names == ["x.ids", "x.mask", "y.0", "y.1.image", "y.1.target"]
    assert [name for name, _ in batches.split_fields(_Encoding(input_ids=t, labels=t))] == ["input_ids", "labels"]
    assert [name for name, _ in batches.split_fields(t)] == ["0"]


@pytest.mark.parametrize("batch, expected", [
    ({"input": torch.zeros(2), "Label": torch.tensor([1, 2])}, "Label"),
    (_Encoding(input_ids=torch.zeros(2, dtype=torch.long), labels=torch.tensor([0, 1])), "labels"),
    ((torch.zeros(2), torch.tensor([1, 2])), "1"),
    (Pair(torch.zeros(2), torch.tensor([1, 2])), "target"),
    ({"input": torch.zeros(2), "label": torch.tensor([0.5, 1.0])}, None),   # float targets: no ids
    ((torch.zeros(2), torch.zeros(2)), None),
    ((torch.tensor([1, 2]),), None),                                        # one tensor: no target
    (torch.tensor([1, 2]), None),
])
def test_find_target(batch, expected):
    found = batches.find_target(batch)
    assert (found[0] if found else None) == expected


def test_label_histogram_counts_ids_including_out_of_bin_ones():
    assert _labels([2, 0, 2, -100]) == {"field": "y", "hist": {"-100": 1, "0": 1, "2": 2}}
    assert _labels([5000, 7, 5000]) == {"field": "y", "hist": {"7": 1, "5000": 2}}
    assert _labels(list(range(batches.MAX_CLASSES + 1))) is None


def test_label_histogram_sums_the_steps_batches():
    parts = [batches.LabelCounts("y", torch.tensor(v)) for v in ([0, 1], [1, 1])]
    _resolved(*(p.bins for p in parts))
    assert batches.label_histogram(parts) == {"field": "y", "hist": {"0": 1, "1": 3}}
    assert batches.label_histogram([]) is None


# -- row digests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, row", [(torch.float32, (5,)), (torch.int8, (3,)), (torch.bfloat16, (2, 3)), (torch.bool, (1,))])
def test_row_sums_do_not_depend_on_where_the_row_sits(dtype, row):
    t = (torch.arange(4 * int(np.prod(row))).reshape(4, *row) % 3).to(dtype)
    sums = digest.row_sums(t)
    assert [int(digest.row_sums(t[i:i + 1])[0]) for i in range(4)] == sums.tolist()
    perm = torch.tensor([2, 0, 3, 1])
    assert digest.row_sums(t[perm]).tolist() == sums[perm].tolist()


def test_row_sums_are_order_sensitive_within_a_row():
    t = torch.tensor([[1.0, 2.0, 3.0]])
    assert digest.row_sums(t).item() != digest.row_sums(t.flip(1)).item()


def _rows(n: int = 6) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [("x", torch.randn(n, 4, generator=g)), ("y", torch.arange(n)), ("scalar", torch.tensor(1.0))]


def test_samples_sum_ignores_row_order_and_sees_one_changed_row():
    fields = _rows()
    total = batches.samples_sum(fields).item()
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    assert batches.samples_sum([(n, t[perm] if t.dim() else t) for n, t in fields]).item() == total
    changed = [(n, t.clone()) for n, t in fields]
    changed[0][1][4, 2] += 1.0
    assert batches.samples_sum(changed).item() != total


def test_samples_sum_keeps_a_rows_fields_together():
    fields = _rows()
    y = fields[1][1].clone()
    y[[0, 1]] = y[[1, 0]]  # the same labels, attached to other rows
    assert batches.samples_sum([fields[0], ("y", y)]).item() != batches.samples_sum(fields[:2]).item()


def test_samples_sum_splits_across_batches():
    fields = _rows()
    whole = batches.samples_sum(fields).item()
    halves = [batches.samples_sum([(n, t[s] if t.dim() else t) for n, t in fields]).item() for s in (slice(0, 3), slice(3, 6))]
    assert digest.hex64(sum(halves)) == digest.hex64(whole)


def test_loader_batch_launches_everything_and_resolves_once():
    batch = {"x": torch.randn(4, 2), "label": torch.tensor([0, 1, 1, 3])}
    fetched = batches.LoaderBatch(batch, list(batch.values()), epoch=2, with_digests=True)
    digest.resolve_all([fetched.loader, *fetched.fields.values()], (), [fetched.samples, fetched.labels.bins])
    assert set(fetched.fields) == {"x", "label"} and fetched.epoch == 2
    assert fetched.fields["x"].value == digest.digest_tensors([batch["x"]], weighted=True)
    assert batches.label_histogram([fetched.labels])["hist"] == {"0": 1, "1": 2, "3": 1}
    skipped = batches.LoaderBatch(batch, list(batch.values()), epoch=0, with_digests=False)
    assert skipped.loader is None and skipped.fields == {} and skipped.labels is None


# -- datasets -------------------------------------------------------------------------------------
class _Augmenting(Dataset):
    """Draws from every RNG a transform commonly uses, including one of its own."""

    def __init__(self, n: int = 10) -> None:
        self.data = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
        self.vocab = {"cat": 0, "dog": 1}
        self.names = ["cat", "dog"] * (n // 2)
        self.strength = 0.5
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        noise = torch.rand(3) + np.random.rand() + random.random() + self.rng.random()
        return self.data[i] + self.strength * noise, i % 2


class _Broken(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        raise KeyError(i)


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(range(3))


def _rng_states(dataset: _Augmenting) -> list:
    return [torch.get_rng_state(), repr(np.random.get_state()), random.getstate(), dataset.rng.bit_generator.state]


def test_describing_an_augmenting_dataset_restores_every_rng(monkeypatch):
    dataset = _Augmenting()
    before = _rng_states(dataset)
    # A resume control may have turned the public restore functions into no-ops: they must not be used.
    monkeypatch.setattr(np.random, "set_state", lambda state: None)
    monkeypatch.setattr(random, "setstate", lambda state: None)
    described = batches.describe_dataset(dataset)
    after = _rng_states(dataset)
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]
    assert described["raw"]["n"] == 10 and described["len"] == 10
    assert set(described["attrs"]) == {"data", "vocab", "names"}   # settings and generators are not data


def test_raw_set_digest_ignores_index_order_ordered_does_not():
    x = torch.arange(12.0).reshape(6, 2)
    a = batches.describe_dataset(TensorDataset(x))["raw"]
    b = batches.describe_dataset(TensorDataset(x.flip(0)))["raw"]
    c = batches.describe_dataset(TensorDataset(x + (torch.arange(6) == 3).float()[:, None]))["raw"]
    assert a["set"] == b["set"] and a["ordered"] != b["ordered"]
    assert c["set"] != a["set"]


def test_attrs_see_a_reordered_vocabulary_and_data_frames():
    pd = pytest.importorskip("pandas")
    first, second = _Augmenting(), _Augmenting()
    second.vocab = {"dog": 0, "cat": 1}
    assert batches.dataset_attrs(first)["vocab"] != batches.dataset_attrs(second)["vocab"]
    assert batches.dataset_attrs(first)["data"] == batches.dataset_attrs(second)["data"]
    frame = TensorDataset(torch.zeros(1))
    frame.table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    digest_a = batches.dataset_attrs(frame)["table"]
    frame.table.loc[1, "b"] = "z"
    assert batches.dataset_attrs(frame)["table"] != digest_a


def test_raw_is_skipped_with_a_reason():
    broken = batches.describe_dataset(_Broken())
    assert broken["raw"] is None and "KeyError" in broken["raw_error"]
    stream = batches.describe_dataset(_Stream())
    assert stream["raw"] is None and stream["len"] is None and "raw_error" not in stream


def test_wrapped_datasets_describe_their_inner_data_and_indices():
    inner = _Augmenting()
    a = batches.describe_dataset(Subset(inner, [0, 2, 4]))
    b = batches.describe_dataset(Subset(inner, [4, 2, 0]))
    assert {"dataset.data", "dataset.vocab", "indices"} <= set(a["attrs"])
    assert a["attrs"]["indices"] != b["attrs"]["indices"] and a["attrs"]["dataset.data"] == b["attrs"]["dataset.data"]
    concat = batches.describe_dataset(ConcatDataset([inner, inner]))
    assert concat["attrs"]["datasets.0.data"] == concat["attrs"]["datasets.1.data"] == a["attrs"]["dataset.data"]


def _collate(items):
    return items


def _seed_worker(worker_id: int) -> None:
    pass


def test_describe_loader_settings():
    dataset = TensorDataset(torch.zeros(8, 2))
    plain = batches.describe_loader(DataLoader(dataset, batch_size=4))
    assert plain["shuffle"] is False and plain["collate_fn"] == "default_collate" and plain["generator_seed"] is None
    assert plain["sampler"] == "torch.utils.data.sampler.SequentialSampler" and plain["worker_init_fn"] is None
    loader = DataLoader(dataset, batch_size=3, shuffle=True, drop_last=True, collate_fn=_collate,
                        worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(7))
    described = batches.describe_loader(loader)
    assert described["shuffle"] is True and described["drop_last"] is True and described["batch_size"] == 3
    assert described["collate_fn"] == f"{__name__}._collate" and described["worker_init_fn"] == "_seed_worker"
    assert described["generator_seed"] == 7 and described["dataset"]["len"] == 8
