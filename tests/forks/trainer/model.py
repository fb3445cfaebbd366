"""The classifier: an MLP encoder, a GRU cell that refines a state from zero, and a linear head."""

from __future__ import annotations

import torch
from torch import nn


class MLPEncoder(nn.Module):
    """Two Linear + GELU blocks with dropout; `blocks` is a Sequential so forks can insert layers."""

    def __init__(self, in_features: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class TabularClassifier(nn.Module):
    """Encode the features, refine a state with a GRU cell for a few steps, classify the state.

    The refiner's first call receives a state of zeros: a constant, not the batch.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int, *, dropout: float = 0.1,
                 refine_steps: int = 2) -> None:
        super().__init__()
        self.hidden = hidden
        self.refine_steps = refine_steps
        self.encoder = MLPEncoder(in_features, hidden, dropout)
        self.refiner = nn.GRUCell(hidden, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(features)
        state = torch.zeros(features.shape[0], self.hidden, dtype=encoded.dtype, device=encoded.device)
        for _ in range(self.refine_steps):
            state = self.refiner(encoded, state)
        return self.head(state)


def build_model(cfg: dict, in_features: int, num_classes: int) -> TabularClassifier:
    return TabularClassifier(in_features, cfg["hidden"], num_classes, dropout=cfg["dropout"],
                             refine_steps=cfg["refine_steps"])
