"""The upstream data path: pickle layout, SpeechDataset (days flattened into trials), padding collate, loaders.

Layout read: a pickled dict with "train" and "test", each a list of per-day dicts with
"sentenceDat" (list of (T_i, D) float arrays), "phonemes" (list of zero-padded int
arrays) and "phoneLens" (ints). A test trial's day index is its day's position in the
"test" list, so days must align with "train".
"""
from __future__ import annotations

import pickle

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset


def load_dataset(path: str) -> dict:
    """Read the pickle and check the parts of the layout the trainer relies on."""
    with open(path, "rb") as handle:
        loaded = pickle.load(handle)
    for split in ("train", "test"):
        if split not in loaded:
            raise KeyError(f"{path}: dataset pickle has no {split!r} list")
    if len(loaded["test"]) > len(loaded["train"]):
        raise ValueError(f"{path}: more test days ({len(loaded['test'])}) than train days ({len(loaded['train'])})")
    return loaded


class SpeechDataset(Dataset):
    """Flattens per-day dicts into one trial list; item = (X, y, T_i, phoneLen, day).

    ``transform`` (None upstream) is applied to the float features of a single trial;
    the modified trainer uses it for masking. It never touches labels or lengths.
    """

    def __init__(self, days: list, transform=None):
        self.transform = transform
        self.features, self.labels, self.phone_lens, self.time_lens, self.days = [], [], [], [], []
        for day_index, day in enumerate(days):
            for trial in range(len(day["sentenceDat"])):
                feats = day["sentenceDat"][trial]
                self.features.append(feats)
                self.labels.append(day["phonemes"][trial])
                self.phone_lens.append(day["phoneLens"][trial])
                self.time_lens.append(feats.shape[0])
                self.days.append(day_index)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int):
        # dtypes as upstream: float32 features, int32 labels and lengths, int64 day.
        features = torch.tensor(np.asarray(self.features[index]), dtype=torch.float32)
        if self.transform is not None:
            features = self.transform(features)
        return (
            features,
            torch.tensor(np.asarray(self.labels[index]), dtype=torch.int32),
            torch.tensor(self.time_lens[index], dtype=torch.int32),
            torch.tensor(int(self.phone_lens[index]), dtype=torch.int32),
            torch.tensor(self.days[index], dtype=torch.int64),
        )


def pad_collate(batch):
    """Zero-pad X and y to the batch maximum (batch_first) and stack lengths and days."""
    features, labels, time_lens, phone_lens, days = zip(*batch)
    return (
        pad_sequence(features, batch_first=True, padding_value=0),
        pad_sequence(labels, batch_first=True, padding_value=0),
        torch.stack(time_lens),
        torch.stack(phone_lens),
        torch.stack(days),
    )


def default_pin_memory() -> bool:
    # Upstream always pins; pinning without CUDA only warns, so pin only when it can work.
    return torch.cuda.is_available()


def get_dataset_loaders(path: str, batch_size: int):
    """Upstream's loaders: shuffled train, ordered test, no workers. Returns (train, test, loaded)."""
    loaded = load_dataset(path)
    pin = default_pin_memory()

    def loader(split: str, shuffle: bool) -> DataLoader:
        return DataLoader(SpeechDataset(loaded[split]), batch_size=batch_size, shuffle=shuffle, num_workers=0,
                          pin_memory=pin, collate_fn=pad_collate)

    train_loader = loader("train", shuffle=True)
    test_loader = loader("test", shuffle=False)
    return train_loader, test_loader, loaded
