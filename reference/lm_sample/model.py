"""Decoder-only transformer for next-token prediction, in three parts that the checkpoint set saves apart.

`embeddings` (token + learned position), `blocks` (pre-norm causal self-attention + MLP) and
`decoder` (final norm + output projection, not tied to the embeddings). The checkpoint writer stores
the embeddings and the decoder in their own files (`.bin.embeddings`, `.bin.decoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference.lm_sample.data import IGNORE_INDEX


@dataclass(frozen=True)
class ModelShape:
    """Sizes of the transformer; `vocab_size` comes from the tokenizer."""

    vocab_size: int
    dim: int
    layers: int
    heads: int
    max_seq_len: int
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"embedding dim {self.dim} is not a multiple of {self.heads} heads")


class Embeddings(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.tokens = nn.Embedding(shape.vocab_size, shape.dim)
        self.positions = nn.Embedding(shape.max_seq_len, shape.dim)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.dropout(self.tokens(ids) + self.positions(positions))


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.heads = shape.heads
        self.qkv = nn.Linear(shape.dim, 3 * shape.dim)
        self.proj = nn.Linear(shape.dim, shape.dim)
        self.dropout = shape.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # Causal masking alone is enough: padding only ever follows a document, so no real token attends to it.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(shape.dim)
        self.attn = CausalSelfAttention(shape)
        self.norm2 = nn.LayerNorm(shape.dim)
        self.mlp = nn.Sequential(nn.Linear(shape.dim, shape.mlp_ratio * shape.dim), nn.GELU(),
                                 nn.Linear(shape.mlp_ratio * shape.dim, shape.dim), nn.Dropout(shape.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    """Final norm and the projection to vocabulary logits."""

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(shape.dim)
        self.head = nn.Linear(shape.dim, shape.vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x))


class DecoderLM(nn.Module):
    """Token ids (batch, time) to next-token logits (batch, time, vocab)."""

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.embeddings = Embeddings(shape)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.decoder = Decoder(shape)
        self.apply(_init_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        for block in self.blocks:
            x = block(x)
        return self.decoder(x)


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation: N(0, 0.02) weights, zero biases (LayerNorm keeps its ones and zeros).
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the targets that count, next-token accuracy over the same, and the predictions."""
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    with torch.no_grad():
        predictions = logits.argmax(dim=-1)
        counted = targets != IGNORE_INDEX
        accuracy = (predictions.eq(targets) & counted).sum() / counted.sum().clamp(min=1)
    return loss, accuracy, predictions
