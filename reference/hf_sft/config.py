"""Model presets: a Llama-architecture causal LM built from a config with random weights (no download)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

PRESETS: dict[str, dict[str, int]] = {
    # About 0.46M parameters: a CPU record of a few optimizer steps takes seconds.
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 344},
    # About 1.01B parameters with the 259-id byte vocabulary: 20 layers rather than a Llama-1B's 16, because
    # the byte vocabulary leaves out the ~0.2B embedding parameters a 32k-128k vocabulary would add.
    "1b": {"hidden_size": 2048, "num_hidden_layers": 20, "num_attention_heads": 16, "intermediate_size": 5504},
}


def model_config(preset: str, vocab_size: int, max_positions: int = 2048) -> LlamaConfig:
    """The LlamaConfig of a preset; `vocab_size` comes from the tokenizer."""
    if preset not in PRESETS:
        raise ValueError(f"unknown --model_size {preset!r}; choose one of {', '.join(PRESETS)}")
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max_positions, **PRESETS[preset],
                       num_key_value_heads=PRESETS[preset]["num_attention_heads"], pad_token_id=256,
                       bos_token_id=257, eos_token_id=258, tie_word_embeddings=False, use_cache=False)


def build_model(preset: str, vocab_size: int, model_path: str | Path | None = None) -> torch.nn.Module:
    """A local checkpoint when `model_path` is given (never fetched from a hub), else the preset, randomly initialised.

    Weights stay float32 in both cases: the Trainer's bf16/fp16 flags run the forward under autocast."""
    if model_path is not None:
        return AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, dtype=torch.float32)
    return LlamaForCausalLM(model_config(preset, vocab_size))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
