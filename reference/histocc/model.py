"""The seq2seq + flat-head OccCANINE model: CANINE encoder, 3-layer decoder, linear head.

Construction order is kept as upstream (encoder, decoder layer, token embedding,
positional encoding, decoder stack, head, linear_decoder) because it decides which
torch RNG draws initialise which weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import CanineConfig, CanineModel

DECODER_NHEAD = 8  # hard-coded upstream; H must be divisible by it
DECODER_LAYERS = 3
MAX_TARGET_LEN = 128  # length of the positional-encoding table

# Addition: model presets. "base" is the CanineConfig default, which equals canine-s.
MODEL_PRESETS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                 num_hash_buckets=1024, max_position_embeddings=256),
    "base": {},
}


class TokenEmbedding(nn.Module):
    """Embedding scaled by sqrt(H); no padding_idx, default N(0, 1) init."""

    def __init__(self, vocab_size: int, emb_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size)
        self.emb_size = emb_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens.long()) * math.sqrt(self.emb_size)


class PositionalEncoding(nn.Module):
    """Sinusoidal encoding for sequence-first input [T, B, H]; buffer shape [maxlen, 1, H]."""

    def __init__(self, emb_size: int, dropout: float, maxlen: int = MAX_TARGET_LEN):
        super().__init__()
        den = torch.exp(-torch.arange(0, emb_size, 2) * math.log(10000) / emb_size)
        pos = torch.arange(0, maxlen).reshape(maxlen, 1)
        pos_embedding = torch.zeros((maxlen, emb_size))
        pos_embedding[:, 0::2] = torch.sin(pos * den)
        pos_embedding[:, 1::2] = torch.cos(pos * den)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pos_embedding", pos_embedding.unsqueeze(-2))

    def forward(self, token_embedding: torch.Tensor) -> torch.Tensor:
        return self.dropout(token_embedding + self.pos_embedding[: token_embedding.size(0), :])


class TransformerDecoder(nn.Module):
    """Token embedding + positions + nn.TransformerDecoder + vocabulary head.

    nn.TransformerDecoder deep-copies the one layer it is given, so all layers start
    with identical weights; there is no final LayerNorm and no memory mask.
    """

    def __init__(self, num_layers: int, emb_size: int, nhead: int, vocab_size: int,
                 dropout: float, dim_feedforward: int):
        super().__init__()
        layer = nn.TransformerDecoderLayer(d_model=emb_size, nhead=nhead,
                                           dim_feedforward=dim_feedforward, dropout=dropout)
        self.token_emb = TokenEmbedding(vocab_size, emb_size)
        self.positional_encoding = PositionalEncoding(emb_size, dropout=dropout)
        self.decoder = nn.TransformerDecoder(layer, num_layers=num_layers)
        self.head = nn.Linear(emb_size, vocab_size)

    def forward(self, memory: torch.Tensor, target: torch.Tensor, target_mask: torch.Tensor,
                target_padding_mask: torch.Tensor) -> torch.Tensor:
        """memory [B, M, H], target [B, T] -> logits [B, T, V]."""
        # The layers are sequence-first (batch_first False), so transpose in and out.
        tgt = self.positional_encoding(self.token_emb(target).transpose(0, 1))
        out = self.decoder(tgt, memory.transpose(0, 1), tgt_mask=target_mask,
                           tgt_key_padding_mask=target_padding_mask)
        return self.head(out).transpose(0, 1)


def build_encoder(preset: str = "base", encoder_path: str | None = None) -> CanineModel:
    """CANINE encoder. Upstream loads google/canine-s from the Hub; offline we build it.

    encoder_path (addition) loads local pretrained weights instead of a random init.
    """
    if encoder_path is not None:
        return CanineModel.from_pretrained(encoder_path)
    return CanineModel(CanineConfig(**MODEL_PRESETS[preset]))


class Seq2SeqMixerOccCANINE(nn.Module):
    """Encoder + autoregressive block decoder + flat multi-label head.

    Contract: forward returns (out_seq2seq [B, T, V], out_linear [B, C]); masks are
    built by the caller (see `create_mask`) and used exactly as given.
    """

    def __init__(self, encoder: CanineModel, num_classes: list[int], num_classes_flat: int,
                 dropout_rate: float | None = None, decoder_dim_feedforward: int | None = None):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        dropout_rate = 0.0 if dropout_rate is None else dropout_rate
        dim_ff = hidden if decoder_dim_feedforward is None else decoder_dim_feedforward
        self.decoder = TransformerDecoder(
            num_layers=DECODER_LAYERS, emb_size=hidden, nhead=DECODER_NHEAD,
            vocab_size=max(num_classes) + 1, dropout=dropout_rate, dim_feedforward=dim_ff)
        self.linear_decoder = nn.Linear(hidden, num_classes_flat)
        self.dropout = nn.Dropout(dropout_rate)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state, out.pooler_output

    def forward(self, input_ids, attention_mask, target, target_mask, target_padding_mask):
        memory, pooled = self.encode(input_ids, attention_mask)
        out_seq2seq = self.decoder(memory, target, target_mask, target_padding_mask)
        # Dropout sits after the linear layer (p=0 under finetune).
        out_linear = self.dropout(self.linear_decoder(pooled))
        return out_seq2seq, out_linear


def build_model(num_classes: list[int], num_classes_flat: int, preset: str = "base",
                encoder_path: str | None = None) -> Seq2SeqMixerOccCANINE:
    """The finetune model: dropout None -> 0.0, decoder feed-forward None -> H."""
    return Seq2SeqMixerOccCANINE(build_encoder(preset, encoder_path), num_classes, num_classes_flat)


def generate_square_subsequent_mask(size: int, device) -> torch.Tensor:
    """Float causal mask: -inf above the diagonal, 0 elsewhere."""
    return torch.triu(torch.full((size, size), float("-inf"), device=device), diagonal=1)


def create_mask(target: torch.Tensor, pad_idx: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal mask and key-padding mask for the decoder input [B, T].

    The padding mask is float 0/1, not bool: PyTorch adds float masks to the attention
    logits, so PAD keys get +1.0 instead of being masked. Upstream does this; keep it.
    """
    target_mask = generate_square_subsequent_mask(target.shape[1], device)
    target_padding_mask = (target == pad_idx).to(target_mask.dtype)
    return target_mask, target_padding_mask
