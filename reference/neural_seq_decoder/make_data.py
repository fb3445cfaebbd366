"""Synthetic dataset generator writing upstream's pickle layout with learnable structure.

``python -m reference.neural_seq_decoder.make_data --out FILE.pkl --seed S [--preset tiny|base]``

Each phoneme class has a fixed mean pattern over the channels; a trial concatenates
one segment per label (a few bins of pattern plus noise) with short silences, and a
per-day random mixing matrix and offset are applied, so the day-specific affine maps
have something to undo. Features are z-scored per day as the real data is per block.
Trials are long enough that upstream's T_eff always admits a CTC alignment
(T >= K + S * (2 * len + 2), fact sheet 8.1). Uses only numpy's own seeded generator.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from dataclasses import dataclass

import numpy as np

#: Label array length of the real data; any length >= phoneLens works.
LABEL_PAD = 500


@dataclass(frozen=True)
class DataSpec:
    """Sizes of a synthetic dataset; must agree with the trainer preset of the same name."""

    n_features: int
    n_classes: int
    n_days: int
    train_per_day: int
    test_per_day: int
    min_labels: int
    max_labels: int
    segment_bins: tuple  # (min, max) bins per phoneme segment
    kernel_len: int
    stride_len: int
    noise_sd: float = 0.6


SPECS = {
    "tiny": DataSpec(16, 6, 3, 24, 6, 2, 6, (4, 8), kernel_len=8, stride_len=4),
    "base": DataSpec(256, 40, 4, 96, 16, 5, 15, (6, 10), kernel_len=32, stride_len=4),
}


def _make_trial(rng, spec: DataSpec, patterns, mixing, offset):
    length = int(rng.integers(spec.min_labels, spec.max_labels + 1))
    labels = rng.integers(1, spec.n_classes + 1, size=length)
    pieces = [np.zeros((int(rng.integers(2, 6)), spec.n_features))]
    for label in labels:
        bins = int(rng.integers(spec.segment_bins[0], spec.segment_bins[1] + 1))
        pieces.append(np.tile(patterns[label - 1], (bins, 1)))
        pieces.append(np.zeros((int(rng.integers(1, 3)), spec.n_features)))
    clean = np.concatenate(pieces, axis=0)
    # Pad with silence so upstream's truncated T_eff leaves room for every label and
    # a blank between repeats.
    minimum = spec.kernel_len + spec.stride_len * (2 * length + 2)
    if clean.shape[0] < minimum:
        clean = np.concatenate([clean, np.zeros((minimum - clean.shape[0], spec.n_features))], axis=0)
    noisy = clean @ mixing + offset + rng.normal(0.0, spec.noise_sd, size=clean.shape)
    padded = np.zeros(LABEL_PAD, dtype=np.int32)
    padded[:length] = labels
    return noisy, padded, length


def _zscore(trials):
    # Per-day z-scoring with the 1e-8 guard the real data's notebook uses.
    stacked = np.concatenate(trials, axis=0)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-8
    return [((t - mean) / std).astype(np.float32) for t in trials]


def _make_day(rng, spec: DataSpec, patterns, n_trials: int, mixing, offset) -> dict:
    feats, labels, lens = [], [], []
    for _ in range(n_trials):
        x, y, n = _make_trial(rng, spec, patterns, mixing, offset)
        feats.append(x)
        labels.append(y)
        lens.append(n)
    return {
        "sentenceDat": _zscore(feats) if feats else [],
        "phonemes": labels,
        "phoneLens": np.array(lens, dtype=np.int64),
        "timeSeriesLens": np.array([f.shape[0] for f in feats], dtype=np.int64),
    }


def make_dataset(seed: int, preset: str = "tiny", spec: DataSpec | None = None) -> dict:
    """Build the {"train": [...], "test": [...]} dict; deterministic in (seed, spec)."""
    spec = spec or SPECS[preset]
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0.0, 1.5, size=(spec.n_classes, spec.n_features))
    train, test = [], []
    for _ in range(spec.n_days):
        # Near-identity mixing so the identity-initialised day maps start close.
        mixing = np.eye(spec.n_features) + rng.normal(0.0, 0.2, size=(spec.n_features, spec.n_features))
        offset = rng.normal(0.0, 0.5, size=spec.n_features)
        train.append(_make_day(rng, spec, patterns, spec.train_per_day, mixing, offset))
        test.append(_make_day(rng, spec, patterns, spec.test_per_day, mixing, offset))
    return {"train": train, "test": test}


def write_dataset(path: str, seed: int, preset: str = "tiny", spec: DataSpec | None = None) -> str:
    with open(path, "wb") as handle:
        pickle.dump(make_dataset(seed, preset, spec), handle)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.neural_seq_decoder.make_data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output pickle path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(SPECS), default="tiny", help="data sizes matching the trainer preset")
    namespace = parser.parse_args(argv)
    write_dataset(namespace.out, namespace.seed, namespace.preset)
    spec = SPECS[namespace.preset]
    print(f"wrote {namespace.out}: {spec.n_days} days, {spec.train_per_day} train / {spec.test_per_day} test trials per day, D={spec.n_features}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
