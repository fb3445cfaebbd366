"""Synthetic images, their synthetic "behavioural" embeddings, and the epoch data loaders.

The dataset is a pure function of the preset and DATA_SEED, independent of the
training `--seed`, so every run and every resume sees the same images and
targets. What varies between epochs is the shuffle order and the augmentation,
and both are driven by the global RNG streams that the checkpoint saves.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reference.clip_dora.config import Preset

DATA_SEED = 20241008
"""Fixed seed for images, the frozen target projection and the target noise."""

_LOW_RES = 8
"""Side of the random grid that is upsampled into an image; gives images spatial structure."""

_TARGET_NOISE = 0.1
"""Std of the per-image noise added to the projected targets (the 'human' variability)."""

_AUGMENT_JITTER = 0.02
"""Std of the numpy pixel jitter applied to training images."""


def make_synthetic_split(sizes: Preset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (train_images, train_targets, test_images, test_targets), deterministic in DATA_SEED.

    Targets are a frozen random projection of pooled image colour layout plus noise,
    standing in for per-image behavioural embeddings: learnable, but not exactly.
    """
    gen = torch.Generator().manual_seed(DATA_SEED)
    n = sizes.n_train + sizes.n_test
    low = torch.randn(n, 3, _LOW_RES, _LOW_RES, generator=gen)
    images = torch.nn.functional.interpolate(
        low, size=(sizes.image_size, sizes.image_size), mode="bilinear", align_corners=False
    )
    # The projection reads a pooled view so that targets depend on coarse layout,
    # which a patch-based ViT can actually pick up at tiny sizes.
    pooled = torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
    projection = torch.randn(pooled.shape[1], sizes.target_dim, generator=gen) / pooled.shape[1] ** 0.5
    noise = _TARGET_NOISE * torch.randn(n, sizes.target_dim, generator=gen)
    targets = torch.tanh(pooled @ projection) + noise
    return (images[: sizes.n_train], targets[: sizes.n_train],
            images[sizes.n_train:], targets[sizes.n_train:])


class BehaviourDataset(Dataset):
    """Image/target pairs; training mode augments with the global python and numpy RNGs.

    The augmentation deliberately uses the process-global `random` and `numpy.random`
    streams (as typical research code does) so that restoring those saved states is
    what makes a resumed epoch see the same flips and jitter. This requires
    `num_workers=0`: worker processes would carry their own copies of those streams.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, augment: bool) -> None:
        self.images = images
        self.targets = targets
        self.augment = augment

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment:
            if random.random() < 0.5:
                image = image.flip(-1)
            jitter = np.random.standard_normal(image.shape).astype(np.float32) * _AUGMENT_JITTER
            image = image + torch.from_numpy(jitter)
        return image, self.targets[index]


def draw_shuffle_seed() -> int:
    """Derive this epoch's shuffle seed from the global torch RNG.

    Choice documented for the pair: the shuffle generator is seeded from the torch RNG
    stream rather than from seed+epoch. The checkpoint spec claims the saved RNG states
    are what keep "batch shuffle order" reproducible, so the order must actually depend
    on them; with seed+epoch the saved torch state would be irrelevant to shuffling and
    the pair could not test that claim. Consequence: a resume that restores the torch
    RNG state reproduces the order exactly; one that does not, does not.
    """
    return int(torch.randint(0, 2**62, (1,)).item())


def make_train_loader(dataset: BehaviourDataset, batch_size: int) -> DataLoader:
    """Shuffled loader for one epoch, its generator seeded via `draw_shuffle_seed`.

    Built fresh each epoch so the epoch boundary is the only place shuffle state
    lives; nothing about the loader needs saving beyond the global RNG states.
    """
    generator = torch.Generator().manual_seed(draw_shuffle_seed())
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                      num_workers=0, drop_last=False)


def make_test_loader(dataset: BehaviourDataset, batch_size: int) -> DataLoader:
    """Unshuffled loader; its own generator keeps evaluation from drawing on the global torch RNG."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                      generator=torch.Generator().manual_seed(0))
