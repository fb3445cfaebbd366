"""The CLIP vision tower with DoRA adapters and a frozen head that regresses behavioural embeddings.

Every frozen weight comes from a seeded random init, so the model "architecture
state" is reconstructed identically from the config on resume and only the DoRA
parameters need saving, as the checkpoint spec states.
"""

from __future__ import annotations

import hashlib

import torch
from peft import LoraConfig, get_peft_model
from transformers import CLIPVisionConfig, CLIPVisionModel

from reference.clip_dora.config import Preset

_DORA_DROPOUT = 0.05
"""Adapter dropout: draws on the torch RNG during training, which is why that state is saved."""


class BehaviourRegressor(torch.nn.Module):
    """CLIP vision tower plus a frozen linear projection to the behavioural embedding space.

    The projection plays the role of CLIP's `visual_projection`: fixed, so all
    adaptation has to happen in the DoRA-adapted attention outputs.
    """

    def __init__(self, vision: CLIPVisionModel, target_dim: int) -> None:
        super().__init__()
        self.vision = vision
        self.head = torch.nn.Linear(vision.config.hidden_size, target_dim, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision(pixel_values=pixel_values).pooler_output
        return self.head(pooled)


def _vision_config(sizes: Preset) -> CLIPVisionConfig:
    config = CLIPVisionConfig(
        image_size=sizes.image_size,
        patch_size=sizes.patch_size,
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.intermediate_size,
        num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_heads,
    )
    # Eager attention: its backward has no atomics on GPU, unlike the memory-efficient
    # SDPA kernel, so a continuous run is repeatable enough to compare resumes against.
    config._attn_implementation = "eager"
    return config


def dora_target_modules(sizes: Preset) -> list[str]:
    """Qualified names of the attention output projections DoRA adapts (the last `dora_last_n` blocks)."""
    first = sizes.num_layers - sizes.dora_last_n
    return [f"vision.encoder.layers.{i}.self_attn.out_proj"
            for i in range(first, sizes.num_layers)]


def build_model(sizes: Preset) -> torch.nn.Module:
    """Build the DoRA-wrapped regressor; consumes the global torch RNG, so call after seeding.

    Only the DoRA tensors (`lora_A`, `lora_B`, `lora_magnitude_vector`, i.e. the
    spec's delta_D_A, delta_D_B and m) are trainable afterwards.
    """
    base = BehaviourRegressor(CLIPVisionModel(_vision_config(sizes)), sizes.target_dim)
    dora = LoraConfig(
        r=sizes.dora_rank,
        lora_alpha=2 * sizes.dora_rank,
        lora_dropout=_DORA_DROPOUT,
        target_modules=dora_target_modules(sizes),
        use_dora=True,
    )
    return get_peft_model(base, dora)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable (DoRA) parameters, keyed by their qualified names."""
    return {name: param.detach().cpu().clone()
            for name, param in model.named_parameters() if param.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved DoRA tensors into the model in place; names must match exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise KeyError(f"DoRA state mismatch: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state[name].to(param.device))


def hash_trainable(model: torch.nn.Module) -> dict[str, str]:
    """sha256 of each trainable parameter's raw bytes, plus '__all__' over them in name order."""
    total = hashlib.sha256()
    hashes: dict[str, str] = {}
    for name, tensor in sorted(trainable_state(model).items()):
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        hashes[name] = hashlib.sha256(raw).hexdigest()
        total.update(name.encode())
        total.update(raw)
    hashes["__all__"] = total.hexdigest()
    return hashes
