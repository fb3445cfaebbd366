"""Recognise one piece of training state from its structure or its key name, and describe what it holds.

Each `is_*` predicate looks at one value (and sometimes its key) without recursing; each `describe_*`
returns the short evidence text and the facts behind it. The walk that applies them is in `classify`.
"""

from __future__ import annotations

import re
from typing import Any

TORCH_CPU_STATE_BYTES = 5056
"""Length of `torch.get_rng_state()` (mt19937 state plus the normal-distribution cache) on every torch 1.x/2.x."""

PYTHON_STATE_WORDS = 625
"""`random.getstate()[1]`: 624 Mersenne Twister words and the position."""

MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "acc_delta",
               "sum", "exp_inf", "mu_product", "prev", "step_size", "ax", "eta", "mu")
"""Per-parameter optimizer buffers of torch.optim, listed first-moment first."""

COUNTER_KEYS = frozenset({"epoch", "epochs", "step", "steps", "global_step", "iteration", "iterations", "iter",
                          "global_iteration", "current_epoch", "num_updates", "updates", "completed_steps",
                          "total_steps", "training_run"})
CONFIG_KEYS = frozenset({"args", "config", "cfg", "conf", "hparams", "hyper_parameters", "hyperparameters",
                         "metadata", "training_args", "opt", "options", "settings"})
_DATA_POSITION = re.compile(r"sampler|dataloader|data_loader|batch_idx|batch_index|batches_seen|batch_in_epoch|"
                            r"consumed_samples|consumed_train_samples|samples_seen|data_position|data_state|"
                            r"dataset_state|iterator|^generator|_generator$|shuffle_seed|skip_batches|^loops$|"
                            r"batch_progress")
_EARLY_STOPPING = re.compile(r"^best_|^best$|patience|no_improve|early_?stop|bad_epochs|wait_count|best_metric|"
                             r"best_score")
_ADAPTER = re.compile(r"lora|dora|magnitude|adapter|ia3|prefix_tuning|prompt_encoder|prompt_embeddings")
_RNG_NAME = re.compile(r"rng|random|generator_state|seed_state")
_FILE_SUFFIX = re.compile(r"\.(pt|pth|bin|ckpt|safetensors|json)$")


def key_name(key: Any) -> str:
    """Lower-case key with a checkpoint file suffix removed, so `training_args.bin` reads as `training_args`."""
    return _FILE_SUFFIX.sub("", str(key).lower())


def is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _is_array(value: Any) -> bool:
    import numpy as np

    return is_tensor(value) or isinstance(value, np.ndarray)


def _is_int(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    import numpy as np

    if is_tensor(value):
        return value.numel() == 1 and not value.dtype.is_complex
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def is_byte_tensor(value: Any) -> bool:
    import torch

    return is_tensor(value) and value.dtype == torch.uint8 and value.dim() == 1


def is_torch_cpu_state(value: Any) -> bool:
    return is_byte_tensor(value) and value.numel() == TORCH_CPU_STATE_BYTES


def is_optimizer_state(value: Any) -> bool:
    return isinstance(value, dict) and "state" in value and "param_groups" in value \
        and isinstance(value["param_groups"], (list, tuple))


def is_scheduler_state(value: Any) -> bool:
    return isinstance(value, dict) and "last_epoch" in value \
        and any(k in value for k in ("base_lrs", "_step_count", "_last_lr"))


def is_scaler_state(value: Any) -> bool:
    return isinstance(value, dict) and "scale" in value \
        and any(k in value for k in ("growth_factor", "_growth_tracker", "backoff_factor"))


def is_python_rng(value: Any) -> bool:
    """`random.getstate()` as a tuple or list, or a dict of its three parts (version, internal, gauss_next)."""
    if isinstance(value, dict):
        return "version" in value and "internal" in value
    return isinstance(value, (tuple, list)) and len(value) == 3 and _is_int(value[0]) \
        and isinstance(value[1], (tuple, list)) and len(value[1]) == PYTHON_STATE_WORDS \
        and (value[2] is None or isinstance(value[2], float))


def is_numpy_rng(value: Any) -> bool:
    """`np.random.get_state()` (a 5-tuple starting 'MT19937') or a bit generator's state dict."""
    if isinstance(value, dict):
        return "bit_generator" in value and any(k in value for k in ("state", "keys", "pos"))
    return isinstance(value, (tuple, list)) and len(value) == 5 and value[0] == "MT19937" and _is_array(value[1])


def is_cuda_states(value: Any) -> bool:
    """One CUDA generator state or a list of them (one per device), as the torch.cuda getters return."""
    if is_byte_tensor(value):
        return True
    return isinstance(value, (list, tuple)) and all(is_byte_tensor(v) for v in value)


def is_state_dict(value: Any) -> bool:
    """A dict of named tensors, as `Module.state_dict()` and `safetensors` produce; RNG byte states excluded."""
    if not isinstance(value, dict) or not value:
        return False
    tensors = [v for v in value.values() if is_tensor(v)]
    return len(tensors) == len(value) and not all(is_byte_tensor(v) for v in tensors)


def names_data_position(name: str) -> bool:
    return bool(_DATA_POSITION.search(name)) and "rng" not in name


def names_early_stopping(name: str) -> bool:
    return bool(_EARLY_STOPPING.search(name))


def names_rng(name: str) -> bool:
    return bool(_RNG_NAME.search(name))


def rng_from_name(path_names: list[str]) -> str | None:
    """Which generator a key path names (innermost key first), for states not recognisable by shape."""
    for name in reversed(path_names):
        if "cuda" in name or "gpu" in name:
            return "rng_cuda"
        if "numpy" in name or name.startswith("np_") or name == "np":
            return "rng_numpy"
        if "python" in name or name.startswith("py_") or name == "py":
            return "rng_python"
        if "torch" in name or "cpu" in name:
            return "rng_torch"
    return None


def describe_state_dict(tensors: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """"6 tensors (1,234 elements; float32)" plus whether every name is an adapter's."""
    count = len(tensors)
    elements = sum(int(t.numel()) for t in tensors.values())
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in tensors.values()})
    adapter = bool(tensors) and all(_ADAPTER.search(str(k).lower()) for k in tensors)
    text = f"{count} tensor{'s' if count != 1 else ''} ({elements:,} elements; {', '.join(dtypes)})"
    return text, {"tensors": count, "elements": elements, "dtypes": dtypes, "adapter_only": adapter}


def describe_optimizer(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Moment buffers and step counters of an optimizer `state_dict()`."""
    state = value.get("state") or {}
    per_param = [s for s in state.values() if isinstance(s, dict)] if isinstance(state, dict) else []
    found = {k for s in per_param for k in s}
    # str(): keys of a hand-built state may be ints or NaN, which neither join nor sort with names.
    moments = [k for k in MOMENT_KEYS if k in found] + sorted({str(k) for k in found} - set(MOMENT_KEYS) - {"step"})
    steps = [s["step"] for s in per_param if "step" in s]
    step_values = sorted({int(s.item()) if is_tensor(s) else int(s) for s in steps if is_number(s)})
    groups = value.get("param_groups") or []
    hyper = sorted({str(k) for g in groups if isinstance(g, dict) for k in g if k != "params"})
    details = {"params_with_state": len(per_param), "moment_keys": moments, "step_values": step_values,
               "param_groups": len(groups), "group_keys": hyper}
    if not per_param:
        return (f"has an empty 'state' ({len(groups)} param group{'s' if len(groups) != 1 else ''}: no moments "
                "yet, or an optimizer without per-parameter state)"), details
    text = f"has {', '.join(moments) or 'no buffers'} for {len(per_param)} param{'s' if len(per_param) != 1 else ''}"
    if step_values:
        shown = step_values[0] if len(step_values) == 1 else f"{step_values[0]}..{step_values[-1]}"
        text += f"; step counters present (step {shown})"
    else:
        text += "; no step counters"
    return text, details


def describe_scheduler(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parts = [f"last_epoch={value.get('last_epoch')}"]
    for key in ("_step_count", "base_lrs", "_last_lr", "lr_lambdas", "T_max"):
        if key in value:
            parts.append(f"{key}={value[key]}" if key in ("_step_count", "T_max") else key)
    details = {"last_epoch": value.get("last_epoch"), "keys": sorted(str(k) for k in value)}
    return "has " + ", ".join(parts), details


def describe_scaler(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    scale = value.get("scale")
    scale = float(scale.item()) if is_tensor(scale) and scale.numel() == 1 else scale
    parts = [f"scale={scale}"] + [f"{k}={value[k]}" for k in ("growth_factor", "_growth_tracker") if k in value]
    return "has " + ", ".join(parts), {"scale": scale, "keys": sorted(str(k) for k in value)}


def describe_leaf(value: Any) -> str:
    """A value's type and size in a few words, for evidence about keys found by name."""
    if is_tensor(value):
        if value.numel() == 1:
            return f"={value.item()!r}"
        return f"(tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')})"
    if isinstance(value, dict):
        keys = list(value)
        shown = ", ".join(str(k) for k in keys[:4]) + (f", ... ({len(keys)} keys)" if len(keys) > 4 else "")
        return f"{{{shown}}}"
    if isinstance(value, (list, tuple)):
        return f"({type(value).__name__} of {len(value)})"
    if isinstance(value, (int, float, str, bool)) or value is None:
        text = repr(value)
        return "=" + (text if len(text) <= 40 else text[:37] + "...")
    return f"({type(value).__name__})"
