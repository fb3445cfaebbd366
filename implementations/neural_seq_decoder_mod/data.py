"""Data changes of the modified decoder: SpecAugment-style time/frequency masks and the DataLoader options.

The dataset and collate are upstream's (imported). Masks run per trial inside the
dataset, before padding, as the seed's ``apply_time_mask`` in dataset.py did, so with
workers they draw from each worker's own torch generator. With both probabilities at
0 no transform is installed and no random number is drawn, which keeps the RNG stream
identical to upstream's.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from reference.neural_seq_decoder.data import SpeechDataset, default_pin_memory, load_dataset, pad_collate


def _mask_axis(features: torch.Tensor, axis: int, prob: float, width: int, max_masks: int) -> torch.Tensor:
    """With probability ``prob``, zero 1..max_masks spans of 1..width entries along ``axis``.

    Zero is the feature mean after the per-block z-scoring, so a masked span reads as
    "no information" rather than as a strong signal.
    """
    if prob <= 0 or width <= 0 or max_masks <= 0:
        return features
    if torch.rand(()).item() >= prob:
        return features
    size = features.shape[axis]
    count = int(torch.randint(1, max_masks + 1, ()).item())
    for _ in range(count):
        span = int(torch.randint(1, min(width, size) + 1, ()).item())
        start = int(torch.randint(0, size - span + 1, ()).item())
        if axis == 0:
            features[start : start + span, :] = 0
        else:
            features[:, start : start + span] = 0
    return features


class SpecMask:
    """Per-trial transform on a (T, D) float tensor: time masks, then channel masks."""

    def __init__(self, args: dict):
        self.time = (args["time_mask_prob"], args["time_mask_width"], args["time_mask_max"])
        self.freq = (args["freq_mask_prob"], args["freq_mask_width"], args["freq_mask_max"])

    @staticmethod
    def wanted(args: dict) -> bool:
        return args["time_mask_prob"] > 0 or args["freq_mask_prob"] > 0

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        features = features.clone()
        features = _mask_axis(features, 0, *self.time)
        return _mask_axis(features, 1, *self.freq)


def resolve_pin_memory(setting: str) -> bool:
    if setting == "auto":
        return default_pin_memory()
    return setting == "on"


def build_loaders(args: dict):
    """Train/test loaders with the configured workers, pinning and masks; returns (train, test, loaded)."""
    loaded = load_dataset(args["datasetPath"])
    transform = SpecMask(args) if SpecMask.wanted(args) else None
    options = {
        "batch_size": args["batchSize"],
        "num_workers": args["num_workers"],
        "pin_memory": resolve_pin_memory(args["pin_memory"]),
        "collate_fn": pad_collate,
    }
    if args["num_workers"] > 0:
        options["persistent_workers"] = args["persistent_workers"]
    # Masks are train-only, like upstream's noise.
    train_loader = DataLoader(SpeechDataset(loaded["train"], transform=transform), shuffle=True, **options)
    test_loader = DataLoader(SpeechDataset(loaded["test"]), shuffle=False, **options)
    return train_loader, test_loader, loaded


def to_device(batch, device: str, non_blocking: bool):
    return tuple(t.to(device, non_blocking=non_blocking) for t in batch)
