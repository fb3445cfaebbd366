"""Data preparation: a synthetic CSV table, its label vocabulary, the train/val split, the Dataset and its loaders."""

from __future__ import annotations

import csv
import io

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

NUM_ROWS = 600
NUM_FEATURES = 16
CLASS_NAMES = ("dog", "cat", "horse", "bird", "frog", "fish")


def make_csv(num_rows: int = NUM_ROWS) -> str:
    """The raw table as CSV text: NUM_FEATURES float columns and a string label, the same on every call."""
    rng = np.random.RandomState(1234)
    centers = rng.normal(0.0, 1.5, size=(len(CLASS_NAMES), NUM_FEATURES))
    # Skewed class frequencies, so that the order in which names first appear is not the sorted order.
    weights = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    classes = rng.choice(len(CLASS_NAMES), size=num_rows, p=weights)
    features = centers[classes] + rng.normal(0.0, 1.0, size=(num_rows, NUM_FEATURES))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"f{i}" for i in range(NUM_FEATURES)] + ["label"])
    for row, cls in zip(features, classes):
        writer.writerow([f"{v:.5f}" for v in row] + [CLASS_NAMES[cls]])
    return out.getvalue()


def load_rows(text: str) -> list[dict]:
    """Parse the CSV into rows of {"features": float32 array, "label": class name}."""
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        label = record.pop("label")
        rows.append({"features": np.array([float(record[f"f{i}"]) for i in range(NUM_FEATURES)], dtype=np.float32),
                     "label": label})
    return rows


def build_vocab(labels: list[str]) -> dict[str, int]:
    """Class name -> target id, in sorted order so that ids do not depend on row order."""
    return {name: i for i, name in enumerate(sorted(set(labels)))}


def split(rows: list[dict], val_fraction: float) -> tuple[list[dict], list[dict]]:
    """The first rows train, the last `val_fraction` of them validate."""
    n_train = int(round(len(rows) * (1.0 - val_fraction)))
    return rows[:n_train], rows[n_train:]


class TabularDataset(Dataset):
    """Rows as {"features", "label"} tensors; in training mode each access draws a fresh augmentation.

    The augmentation draws from torch's global RNG: in DataLoader worker processes that is the
    worker's own stream, so the batches depend on `num_workers`.
    """

    def __init__(self, rows: list[dict], vocab: dict[str, int], *, aug_noise: float = 0.0,
                 aug_mask_prob: float = 0.0, train: bool = False) -> None:
        self.features = torch.from_numpy(np.stack([r["features"] for r in rows]))
        self.labels = torch.tensor([vocab[r["label"]] for r in rows], dtype=torch.long)
        self.aug_noise = aug_noise
        self.aug_mask_prob = aug_mask_prob
        self.train = train

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.features[index].clone()
        if self.train:
            x = self._augment(x)
        return {"features": x, "label": self.labels[index]}

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.aug_noise > 0:
            x = x + self.aug_noise * torch.randn_like(x)
        if self.aug_mask_prob > 0:
            x = x.masked_fill(torch.rand_like(x) < self.aug_mask_prob, 0.0)
        return x


def make_loader(dataset: Dataset, cfg: dict, *, train: bool = True) -> DataLoader:
    """Training loaders shuffle with a generator seeded from the config and drop the last partial batch."""
    if not train:
        return DataLoader(dataset, batch_size=cfg["eval_batch_size"], shuffle=False, num_workers=cfg["num_workers"])
    generator = torch.Generator()
    generator.manual_seed(cfg["seed"])
    return DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=True, generator=generator,
                      num_workers=cfg["num_workers"], drop_last=True)


def prepare_datasets(cfg: dict) -> tuple[TabularDataset, TabularDataset, dict[str, int]]:
    """Read the table, build the vocabulary, split, and wrap both halves (only training is augmented)."""
    rows = load_rows(make_csv())
    vocab = build_vocab([r["label"] for r in rows])
    train_rows, val_rows = split(rows, cfg["val_fraction"])
    train_set = TabularDataset(train_rows, vocab, aug_noise=cfg["aug_noise"], aug_mask_prob=cfg["aug_mask_prob"],
                               train=True)
    return train_set, TabularDataset(val_rows, vocab), vocab
