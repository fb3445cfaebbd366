"""Recorded data, taken apart: fields, samples per epoch, labels, epochs, DataLoader meta, unchanged results."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import _BaseDataLoaderIter

import parity
from parity.trace import schema
from parity.trace.reader import load_run

_MASK64 = (1 << 64) - 1


class _Rows(Dataset):
    """Rows of {"features", "label"}; optionally a random augmentation drawn from every global RNG."""

    def __init__(self, n: int = 24, augment: bool = False, changed_row: int | None = None) -> None:
        g = torch.Generator().manual_seed(5)
        self.features = torch.randn(n, 4, generator=g)
        if changed_row is not None:
            self.features[changed_row, 0] += 1.0
        self.labels = torch.arange(n) % 3
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.features[i]
        if self.augment:
            x = x + 0.1 * torch.randn(4) + float(np.random.rand()) * random.random()
        return {"features": x, "label": self.labels[i]}


def _train(dataset: Dataset, *, epochs: int = 2, order_seed: int = 0, num_workers: int = 0) -> list[str]:
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=6, shuffle=True, num_workers=num_workers,
                        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(order_seed))
    # Created after the loader, so its initialisation shows any draw that describing the dataset leaked.
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(batch["features"]), batch["label"])
            loss.backward()
            opt.step()
            losses.append(loss.item().hex())
    return losses


def _record(path, dataset: Dataset, **kwargs):
    with parity.record(path):
        losses = _train(dataset, **kwargs)
    return load_run(path).primary, losses


def _epoch_samples(steps: list[dict]) -> dict[int, int]:
    sums: dict[int, int] = {}
    for s in steps:
        sums[s[schema.F_EPOCH]] = (sums.get(s[schema.F_EPOCH], 0) + int(s[schema.F_SAMPLES], 16)) & _MASK64
    return sums


def test_steps_record_fields_samples_labels_and_epoch(tmp_path):
    trace, _ = _record(tmp_path / "run", _Rows())
    steps = trace.steps
    assert len(steps) == 8 and [s[schema.F_EPOCH] for s in steps] == [0] * 4 + [1] * 4
    for s in steps:
        assert len(s[schema.F_FIELDS]) == len(s["loader"]) == 1
        assert set(s[schema.F_FIELDS][0]) == {"features", "label"}
        assert len(s[schema.F_SAMPLES]) == 16
        hist = s[schema.F_LABELS]
        assert hist["field"] == "label" and sum(hist["hist"].values()) == 6 and set(hist["hist"]) <= {"0", "1", "2"}
    # Over one epoch every row is seen once: the histograms add up to the dataset's labels.
    epoch0 = [s[schema.F_LABELS]["hist"] for s in steps[:4]]
    assert {k: sum(h.get(k, 0) for h in epoch0) for k in ("0", "1", "2")} == {"0": 8, "1": 8, "2": 8}


def test_same_samples_in_another_order_keep_the_epoch_sum(tmp_path):
    base, _ = _record(tmp_path / "a", _Rows(), order_seed=0)
    reordered, _ = _record(tmp_path / "b", _Rows(), order_seed=1)
    changed, _ = _record(tmp_path / "c", _Rows(changed_row=7), order_seed=0)
    assert base.steps[0]["loader"] != reordered.steps[0]["loader"]
    assert _epoch_samples(base.steps) == _epoch_samples(reordered.steps)
    # Only the steps whose batch holds row 7 change; the epoch sums all change.
    assert all(a != c for a, c in zip(_epoch_samples(base.steps).values(), _epoch_samples(changed.steps).values()))
    assert [s[schema.F_LABELS] for s in base.steps] == [s[schema.F_LABELS] for s in changed.steps]


def test_dataloader_and_first_batch_rng_meta(tmp_path):
    trace, _ = _record(tmp_path / "run", _Rows())
    (loader,) = trace.meta[schema.META_DATALOADERS]
    assert loader["shuffle"] is True and loader["batch_size"] == 6 and loader["num_workers"] == 0
    assert loader["generator_seed"] == 0 and loader["collate_fn"] == "default_collate"
    dataset = loader["dataset"]
    assert dataset["class"].endswith("._Rows") and dataset["len"] == 24 and dataset["raw"]["n"] == 24
    assert set(dataset["attrs"]) == {"features", "labels"}
    assert set(trace.meta[schema.META_RNG_AT_FIRST_BATCH]) >= {"torch", "numpy", "python"}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_recording_an_augmenting_dataset_changes_nothing(tmp_path, num_workers):
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    plain = _train(_Rows(augment=True), num_workers=num_workers)
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    trace, recorded = _record(tmp_path / "run", _Rows(augment=True), num_workers=num_workers)
    assert recorded == plain
    assert trace.meta[schema.META_DATALOADERS][0]["dataset"]["raw"]["n"] == 24
    # persistent workers hand out the same iterator again: epochs still count per __iter__.
    assert [s[schema.F_EPOCH] for s in trace.steps] == [0] * 4 + [1] * 4


def test_minimal_level_keeps_epochs_only(tmp_path):
    with parity.record(tmp_path / "run", level="minimal"):
        _train(_Rows(), epochs=1)
    steps = load_run(tmp_path / "run").primary.steps
    assert [s[schema.F_EPOCH] for s in steps] == [0] * 4
    assert all(not s[schema.F_FIELDS] and s[schema.F_SAMPLES] is None and s[schema.F_LABELS] is None for s in steps)


def test_loader_patches_are_removed(tmp_path):
    originals = (DataLoader.__init__, DataLoader.__iter__, _BaseDataLoaderIter.__next__)
    with parity.record(tmp_path / "run"):
        assert DataLoader.__init__ is not originals[0] and DataLoader.__iter__ is not originals[1]
    assert (DataLoader.__init__, DataLoader.__iter__, _BaseDataLoaderIter.__next__) == originals


def test_a_hf_datasets_arrow_table_is_prepared_data():
    """A HF `datasets.Dataset` keeps its rows in an Arrow table: a changed truncation in `map` is a change of
    the prepared data (a dataset attribute), not of a transform applied when items are read."""
    datasets = pytest.importorskip("datasets")
    from parity.capture.batches import dataset_attrs

    rows = [{"ids": list(range(i % 50 + 5))} for i in range(100)]

    def prepared(max_length: int):
        return datasets.Dataset.from_list(rows).map(lambda r: {"ids": r["ids"][:max_length]})

    assert dataset_attrs(prepared(30))["_data"] == dataset_attrs(prepared(30))["_data"]
    assert dataset_attrs(prepared(30))["_data"] != dataset_attrs(prepared(20))["_data"]
