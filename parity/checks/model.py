"""`model`: the structure of the trained model (module tree, parameters, buffers, frozen or not)."""

from __future__ import annotations

from typing import Any

from parity.checks.base import Finding, not_compared
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import TraceMeta
from parity.trace.schema import (MODEL_OPTIMIZER_ONLY, MODEL_ROOTS, ROOT_BUFFERS, ROOT_CLASS, ROOT_MODULES,
                                 ROOT_N_PARAMS, ROOT_N_TRAINABLE, ROOT_PARAMS)

#: Items listed per kind of difference in the evidence; the counts are always complete.
_SHOWN = 8
#: Evidence keys of the parameter counts (report vocabulary: `params` here is a count, not the step field).
_COUNT_ALL, _COUNT_TRAINABLE = "params", "trainable"


def _short(cls: str) -> str:
    return cls.rpartition(".")[2]


def _index(rows: list, width: int) -> dict[str, tuple]:
    return {row[0]: tuple(row[1:width]) for row in rows if isinstance(row, list) and row}


def _diff_named(a: dict[str, tuple], b: dict[str, tuple], what: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for name in sorted(set(a) | set(b), key=lambda n: (n not in a, n)):
        if name not in b:
            changes.append({"kind": f"{what} removed", "name": name, "baseline": _fmt(a[name], fields)})
        elif name not in a:
            changes.append({"kind": f"{what} added", "name": name, "candidate": _fmt(b[name], fields)})
        elif a[name] != b[name]:
            for field, va, vb in zip(fields, a[name], b[name]):
                if va != vb:
                    kind = {"shape": f"{what} shape changed", "dtype": f"{what} dtype changed",
                            "requires_grad": "frozen" if va and not vb else "unfrozen", "class": "module class changed",
                            "settings": "module settings changed"}[field]
                    changes.append({"kind": kind, "name": name, "baseline": va, "candidate": vb})
    return changes


def _fmt(values: tuple, fields: tuple[str, ...]) -> dict[str, Any]:
    return dict(zip(fields, values))


def _root_changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    changes = []
    # The root itself ("") is left out: a fork may rename the model class; what it holds is compared.
    # [fqn, class, settings]; traces before module settings were recorded have [fqn, class].
    modules_a = {m[0]: (_short(m[1]), *m[2:3]) for m in a.get(ROOT_MODULES, []) if m and m[0]}
    modules_b = {m[0]: (_short(m[1]), *m[2:3]) for m in b.get(ROOT_MODULES, []) if m and m[0]}
    changes += _diff_named(modules_a, modules_b, "module", ("class", "settings"))
    changes += _diff_named(_index(a.get(ROOT_PARAMS, []), 4), _index(b.get(ROOT_PARAMS, []), 4), "parameter",
                           ("shape", "dtype", "requires_grad"))
    changes += _diff_named(_index(a.get(ROOT_BUFFERS, []), 3), _index(b.get(ROOT_BUFFERS, []), 3), "buffer",
                           ("shape", "dtype"))
    return changes


def _counts(model: dict[str, Any]) -> dict[str, int]:
    roots = model.get(MODEL_ROOTS, [])
    return {_COUNT_ALL: sum(r.get(ROOT_N_PARAMS, 0) for r in roots),
            _COUNT_TRAINABLE: sum(r.get(ROOT_N_TRAINABLE, 0) for r in roots)}


def _headline(changes: list[dict[str, Any]]) -> str:
    parts = []
    for change in changes[:3]:
        if ("shape" in change["kind"] or "settings" in change["kind"]) and "baseline" in change and "candidate" in change:
            parts.append(f"{change['name']} {change['baseline']} -> {change['candidate']}")
        elif change["kind"].startswith("module"):
            side = change.get("candidate") or change.get("baseline") or {}
            cls = side.get("class") if isinstance(side, dict) else None
            parts.append(f"{change['kind']} {change['name']}" + (f" ({cls})" if cls else ""))
        else:
            parts.append(f"{change['kind']} {change['name']}")
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return "; ".join(parts) + more


def check_model(baseline: Trace, candidate: Trace) -> Finding:
    """DIFFERENT when the trained model's structure differs: added or removed modules, parameters or
    buffers, changed shapes or dtypes, frozen or unfrozen parameters. A different model is different
    training, whatever the losses say; the class names of the roots may differ (a fork renames) as long
    as what they hold is the same."""
    a, b = TraceMeta.of(baseline).model, TraceMeta.of(candidate).model
    if a is None or b is None:
        side = "either side" if a is None and b is None else ("the baseline" if a is None else "the candidate")
        return not_compared("model", f"no model structure recorded on {side} (trace older than schema v2, or no "
                                     "forward with grad before the first update)")
    roots_a, roots_b = a.get(MODEL_ROOTS, []), b.get(MODEL_ROOTS, [])
    changes: list[dict[str, Any]] = []
    if len(roots_a) != len(roots_b):
        changes.append({"kind": "root modules changed", "name": "(roots)",
                        "baseline": [_short(r.get(ROOT_CLASS, "?")) for r in roots_a],
                        "candidate": [_short(r.get(ROOT_CLASS, "?")) for r in roots_b]})
    for ra, rb in zip(roots_a, roots_b):
        changes += _root_changes(ra, rb)
    only_a, only_b = a.get(MODEL_OPTIMIZER_ONLY, []), b.get(MODEL_OPTIMIZER_ONLY, [])
    if sorted(map(repr, only_a)) != sorted(map(repr, only_b)):
        changes.append({"kind": "optimizer-only parameters changed", "name": "(outside the model)",
                        "baseline": len(only_a), "candidate": len(only_b)})
    counts_a, counts_b = _counts(a), _counts(b)
    evidence: dict[str, Any] = {
        "strength": "structure (names, shapes, dtypes, requires_grad)",
        "roots": {"baseline": [r.get(ROOT_CLASS) for r in roots_a], "candidate": [r.get(ROOT_CLASS) for r in roots_b]},
        "parameters": {"baseline": counts_a, "candidate": counts_b},
    }
    if not changes:
        return Finding("model", schema.IDENTICAL, f"same module tree, parameter names, shapes, dtypes and frozen "
                       f"parameters ({counts_a[_COUNT_ALL]:,} parameters, {counts_a[_COUNT_TRAINABLE]:,} trainable)", None, evidence)
    evidence["changes"] = changes[:_SHOWN * 3]
    evidence["n_changes"] = len(changes)
    delta = counts_b[_COUNT_ALL] - counts_a[_COUNT_ALL]
    sized = f"; {counts_a[_COUNT_ALL]:,} -> {counts_b[_COUNT_ALL]:,} parameters ({delta:+,})" if delta else ""
    return Finding("model", schema.DIFFERENT, f"the model's structure differs: {_headline(changes)}{sized}", 0, evidence)
