"""Compare the structure of two checkpoints: keys, tensor shapes and dtypes, scalar types; never tensor values.

Two checkpoints of one trainer written at different steps have no structural differences; a trainer
that starts saving its optimizer shows `['optimizer_state']` as added.
"""

from __future__ import annotations

from typing import Any

from parity.audit.load import LoadedCheckpoint, Unloaded

_SUMMARISED_LIST = 8
"""Lists of scalars longer than this (RNG words, lr lists) become "list of N int" instead of N entries."""

_CHANGES = {
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "attribute_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
    "attribute_removed": "removed",
    "values_changed": "changed",
    "type_changes": "changed",
}


def diff_checkpoints(a: LoadedCheckpoint, b: LoadedCheckpoint) -> list[dict[str, Any]]:
    """Structural differences from `a` to `b`, sorted by key path.

    Each entry is {"path", "change", "a", "b"}: change is "added", "removed" or "changed"; a and b
    describe the structure on each side ("tensor float32 [4, 3]", "int", "dict of 5 keys") or are None
    where that side has nothing at the path.
    """
    from deepdiff import DeepDiff
    from deepdiff.helper import NotPresent

    left, right = skeleton(a.tree), skeleton(b.tree)
    # threshold 0: always report key by key; by default deepdiff replaces a whole dict that shares few keys.
    tree = DeepDiff(left, right, view="tree", ignore_order=False, verbose_level=2, threshold_to_diff_deeper=0)
    out: list[dict[str, Any]] = []
    for report_type, levels in tree.items():
        change = _CHANGES.get(report_type)
        if change is None:  # repetition and set reports cannot occur: skeletons hold no sets
            continue
        for level in levels:
            out.append({
                "path": "".join(f"[{step}]" for step in level.path(output_format="list")),
                "change": change,
                "a": None if isinstance(level.t1, NotPresent) else _summary(level.t1),
                "b": None if isinstance(level.t2, NotPresent) else _summary(level.t2),
            })
    return sorted(out, key=lambda entry: entry["path"])


def skeleton(value: Any) -> Any:
    """The value with every leaf replaced by a description of its type and size."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor {str(value.dtype).replace('torch.', '')} {list(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"ndarray {value.dtype} {list(value.shape)}"
    if isinstance(value, Unloaded):
        return f"not loaded ({value.reason})"
    if isinstance(value, dict):
        return {label: skeleton(item) for label, item in zip(key_labels(value), value.values())}
    if isinstance(value, (list, tuple)):
        if len(value) > _SUMMARISED_LIST and all(_is_scalar(v) for v in value):
            kinds = "/".join(sorted({type(v).__name__ for v in value}))
            return f"{type(value).__name__} of {len(value)} {kinds}"
        return [skeleton(item) for item in value]
    if isinstance(value, torch.nn.Module):  # trusted loads only
        return {key: skeleton(item) for key, item in value.state_dict().items()}
    return type(value).__name__ if _is_scalar(value) else f"{type(value).__module__}.{type(value).__qualname__}"


def key_labels(mapping: dict[Any, Any]) -> list[str]:
    """Each key as the subscript a user would type (`'lr'`, `3`, `nan`), unique within the dict.

    Skeletons are keyed by these strings because raw keys break the diff: a NaN key never equals the
    NaN key of the other checkpoint (or itself, once reloaded), and keys of mixed types do not sort.
    Two keys with one repr (two NaNs) are told apart by their position.
    """
    labels: list[str] = []
    seen: set[str] = set()
    for position, key in enumerate(mapping):
        label = repr(key)
        if label in seen:
            label = f"{label} (key #{position + 1})"
        seen.add(label)
        labels.append(label)
    return labels


def _is_scalar(value: Any) -> bool:
    import numpy as np

    return value is None or isinstance(value, (bool, int, float, str, bytes, complex, np.generic))


def _summary(value: Any) -> str:
    if isinstance(value, dict):
        return f"dict of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, list):
        return f"list of {len(value)}"
    return str(value)

