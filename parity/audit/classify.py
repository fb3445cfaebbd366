"""Walk a loaded checkpoint and say, for every category of training state, whether it is saved and where.

Structure decides first (an optimizer `state_dict()` is found under any key name), key names second
(`epoch`, `best_*`, `sampler`, ...). Nothing here knows whether the run used a state: that is
`usage.compare_with_trace`'s job, so this module never answers "not_applicable".
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from parity.audit import detect
from parity.audit.load import LoadedCheckpoint, Unloaded
from parity.audit.result import CATEGORIES, NOT_SAVED, SAVED, Audit, CategoryResult

_MAX_DEPTH = 32
"""Deeper nesting than any trainer writes; past it the walk stops rather than recursing without end."""
_MAX_ITEMS = 10_000
"""Elements of one list that are inspected; a longer list is sampled from its start (log histories)."""
_SHOWN_PATHS = 3
"""Key paths quoted in one category's evidence; the rest are counted, and all are in `details["paths"]`."""

_ABSENT = {
    "model": "no state-dict-like dict of tensors found",
    "optimizer": "no dict with 'state' and 'param_groups' (an optimizer state_dict) found",
    "scheduler": "no dict with 'last_epoch' and 'base_lrs'/'_step_count' (a scheduler state_dict) found",
    "grad_scaler": "no dict with 'scale' and 'growth_factor'/'_growth_tracker' (a GradScaler state_dict) found",
    "rng_python": "no random.getstate()-like state found",
    "rng_numpy": "no numpy RandomState/bit-generator state found",
    "rng_torch": f"no torch CPU generator state ({detect.TORCH_CPU_STATE_BYTES}-byte ByteTensor) found",
    "rng_cuda": "no CUDA generator states (ByteTensors under a 'cuda' key) found",
    "counters": "no epoch/step/global_step/iteration key found",
    "data_position": "no sampler/dataloader/batch-index/generator key found",
    "early_stopping": "no best_*/patience/epochs_no_improve/early_stopping key found",
    "config": "no args/config/hparams/metadata/training_args key found",
}


@dataclass
class _Hit:
    category: str
    path: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Walk:
    hits: list[_Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def hit(self, category: str, path: list[Any], text: str, **details: Any) -> None:
        self.hits.append(_Hit(category, format_path(path), text, details))


def format_path(path: list[Any]) -> str:
    """Key path as Python subscripts, `['rng_state']['cuda'][0]`; the checkpoint itself is `(root)`."""
    return "".join(f"[{k!r}]" for k in path) or "(root)"


def classify(loaded: LoadedCheckpoint) -> Audit:
    """One `CategoryResult` per category: "saved" with the key paths found, or "not_saved"."""
    walk = _Walk()
    _visit(walk, loaded.tree, [])
    for entry in loaded.files:
        if entry.status == "ignored":
            walk.notes.append(f"{entry.name}: not a checkpoint file type, ignored")
        elif entry.status != "loaded":
            walk.notes.append(f"{entry.name}: {entry.status}")
    results = [_result(category, [h for h in walk.hits if h.category == category], walk)
               for category in CATEGORIES]
    return Audit(checkpoint=loaded.name, categories=results, notes=walk.notes)


def _result(category: str, hits: list[_Hit], walk: _Walk) -> CategoryResult:
    if not hits:
        evidence = _ABSENT[category]
        if category == "data_position" and any(h.category == "counters" for h in walk.hits):
            evidence += " (a resume can only re-derive the position from the counters)"
        return CategoryResult(category, NOT_SAVED, evidence, {"paths": []})
    shown = [f"{h.path}{h.text}" if h.text[:1] in ("=", ":") else f"{h.path} {h.text}".rstrip()
             for h in hits[:_SHOWN_PATHS]]
    evidence = "; ".join(shown)
    if len(hits) > _SHOWN_PATHS:
        evidence += f"; and {len(hits) - _SHOWN_PATHS} more"
    details: dict[str, Any] = {"paths": [h.path for h in hits]}
    if len(hits) == 1:
        details.update(hits[0].details)
    if category == "model":
        details["tensors"] = sum(h.details.get("tensors", 0) for h in hits)
        details["elements"] = sum(h.details.get("elements", 0) for h in hits)
        details["adapter_only"] = all(h.details.get("adapter_only") for h in hits)
        if details["adapter_only"]:
            evidence += "; adapter parameters only"
    if category == "rng_cuda" and all(h.details.get("empty") for h in hits):
        details["empty"] = True
    return CategoryResult(category, SAVED, evidence, details)


def _visit(walk: _Walk, value: Any, path: list[Any]) -> None:
    if len(path) > _MAX_DEPTH:
        walk.notes.append(f"{format_path(path)}: nested deeper than {_MAX_DEPTH} levels, not inspected")
        return
    if isinstance(value, Unloaded):
        if detect.key_name(value.name) in detect.CONFIG_KEYS:
            walk.hit("config", path, f": {value.reason}")
        else:
            walk.notes.append(f"{format_path(path)}: {value.reason}")
        return
    unwrapped = _unwrap_object(value)
    if unwrapped is not None:
        _visit(walk, unwrapped, path)
        return
    if _structural_dict(walk, value, path):
        return
    names = [detect.key_name(k) for k in path if isinstance(k, str)]
    if path and isinstance(path[-1], str) and _named(walk, value, path, detect.key_name(path[-1])):
        return
    if _rng_leaf(walk, value, path, names):
        return
    if isinstance(value, dict):
        _visit_dict(walk, value, path, names)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value[:_MAX_ITEMS]):
            if not _is_scalar(item):
                _visit(walk, item, path + [index])
    elif detect.is_tensor(value):
        if not path:
            text, details = detect.describe_state_dict({"(root)": value})
            walk.hit("model", path, f"is a single tensor: {text}", **details)
    elif not _is_scalar(value) and not _is_ndarray(value):
        walk.notes.append(f"{format_path(path)}: holds a {type(value).__module__}.{type(value).__qualname__} "
                          "object (not inspected)")


def _structural_dict(walk: _Walk, value: Any, path: list[Any]) -> bool:
    """States recognised by their keys wherever they sit; a match is not walked further."""
    if detect.is_optimizer_state(value):
        text, details = detect.describe_optimizer(value)
        where = path + ["state"] if details["params_with_state"] else path
        walk.hit("optimizer", where, text, **details)
    elif detect.is_scaler_state(value):
        text, details = detect.describe_scaler(value)
        walk.hit("grad_scaler", path, text, **details)
    elif detect.is_scheduler_state(value):
        text, details = detect.describe_scheduler(value)
        walk.hit("scheduler", path, text, **details)
    elif isinstance(value, dict) and detect.is_numpy_rng(value):
        walk.hit("rng_numpy", path, f"has a {value.get('bit_generator')} state")
    elif isinstance(value, dict) and detect.is_python_rng(value):
        walk.hit("rng_python", path, f"has a random.getstate() state (version {value.get('version')})")
    elif detect.is_state_dict(value):
        text, details = detect.describe_state_dict(value)
        walk.hit("model", path, f"has {text}", **details)
    else:
        return False
    return True


def _named(walk: _Walk, value: Any, path: list[Any], name: str) -> bool:
    """Categories recognised by the key alone; RNG-named keys are left to the structural RNG checks."""
    if detect.names_rng(name):
        return False
    if detect.names_data_position(name):
        walk.hit("data_position", path, detect.describe_leaf(value))
    elif detect.names_early_stopping(name):
        walk.hit("early_stopping", path, detect.describe_leaf(value))
    elif name in detect.CONFIG_KEYS:
        walk.hit("config", path, detect.describe_leaf(value))
    elif name in detect.COUNTER_KEYS and detect.is_number(value):
        walk.hit("counters", path, detect.describe_leaf(value), value=_plain(value))
    else:
        return False
    return True


def _rng_leaf(walk: _Walk, value: Any, path: list[Any], names: list[str]) -> bool:
    """Generator states recognised by shape (python, numpy, torch CPU) or, failing that, by key name."""
    under_cuda = any("cuda" in n for n in names)
    if detect.is_python_rng(value) and not isinstance(value, dict):
        walk.hit("rng_python", path, "has a random.getstate() tuple")
    elif detect.is_numpy_rng(value) and not isinstance(value, dict):
        walk.hit("rng_numpy", path, f"has a numpy {value[0]} state")
    elif detect.is_torch_cpu_state(value) and not under_cuda:
        walk.hit("rng_torch", path, f"has a {detect.TORCH_CPU_STATE_BYTES}-byte torch CPU generator state")
    elif under_cuda and detect.is_cuda_states(value):
        count = 1 if detect.is_tensor(value) else len(value)
        if count == 0:
            walk.hit("rng_cuda", path, "is an empty list (saved on a machine without CUDA)", empty=True)
        else:
            walk.hit("rng_cuda", path, f"has {count} CUDA generator state{'s' if count != 1 else ''}", devices=count)
    elif not isinstance(value, dict) and any(detect.names_rng(n) for n in names) and detect.rng_from_name(names):
        category = detect.rng_from_name(names)
        walk.hit(category, path, f"{detect.describe_leaf(value)} (recognised by its key name only)".lstrip())
    else:
        return False
    return True


def _visit_dict(walk: _Walk, value: dict[Any, Any], path: list[Any], names: list[str]) -> None:
    """A mixed dict: its loose tensors count as model weights (unless it is RNG state); walk the rest."""
    loose = {k: v for k, v in value.items() if detect.is_tensor(v) and not detect.is_byte_tensor(v)}
    in_rng = any(detect.names_rng(n) for n in names)
    if loose and not in_rng:
        text, details = detect.describe_state_dict(loose)
        walk.hit("model", path, f"has {text} among {len(value)} keys", **details)
    for key, item in value.items():
        if key in loose and not in_rng:
            continue
        _visit(walk, item, path + [key])


def _unwrap_object(value: Any) -> Any:
    """A trusted load can hold live objects; audit the state they would save, never call anything else."""
    import torch

    if isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler,
                          torch.amp.GradScaler)):
        return value.state_dict()
    if isinstance(value, argparse.Namespace):
        return vars(value)
    return None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, bytes, complex))


def _is_ndarray(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (np.ndarray, np.generic))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
