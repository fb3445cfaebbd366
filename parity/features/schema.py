"""A small JSON schema: inferred from the files a run wrote, compared between sides, and used to validate.

No dependency: the shape needed here is types per path, the keys every object has, and the keys it may
have. The schema is a plain dict (JSON-serialisable, so it goes into `--format json` as it is):
{"type": [names], "properties": {key: schema}, "required": [keys], "items": schema}.
"""

from __future__ import annotations

from typing import Any

#: JSON type names (integers are numbers too: a metric logged as 2 in one record and 2.5 in the next is one number).
_TYPES = ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"), (type(None), "null"),
          (list, "array"), (dict, "object"))
#: Paths listed in a violation message; the count is always complete.
_SHOWN = 4


def type_name(value: Any) -> str:
    return next(name for cls, name in _TYPES if isinstance(value, cls))


def infer_schema(value: Any) -> dict[str, Any]:
    """The schema `value` satisfies: its type, and for objects and arrays, their members' merged schemas."""
    kind = type_name(value)
    schema: dict[str, Any] = {"type": [kind]}
    if kind == "object":
        schema["properties"] = {k: infer_schema(v) for k, v in value.items()}
        schema["required"] = sorted(value)
    elif kind == "array" and value:
        items = infer_schema(value[0])
        for item in value[1:]:
            items = merge_schemas(items, infer_schema(item))
        schema["items"] = items
    return schema


def merge_schemas(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The narrowest schema both satisfy: types united, a key required only where both require it."""
    out: dict[str, Any] = {"type": sorted(set(a["type"]) | set(b["type"]))}
    pa, pb = a.get("properties"), b.get("properties")
    if pa is not None or pb is not None:
        pa, pb = pa or {}, pb or {}
        out["properties"] = {k: merge_schemas(pa[k], pb[k]) if k in pa and k in pb else (pa.get(k) or pb[k])
                             for k in sorted(set(pa) | set(pb))}
        required = set(a.get("required", [])) if "properties" in a else set(b.get("required", []))
        if "properties" in a and "properties" in b:
            required &= set(b.get("required", []))
        out["required"] = sorted(required)
    ia, ib = a.get("items"), b.get("items")
    if ia is not None or ib is not None:
        out["items"] = merge_schemas(ia, ib) if ia is not None and ib is not None else (ia or ib)
    return out


def flatten_schema(schema: dict[str, Any], path: str = "$") -> dict[str, str]:
    """{path: "type|type"} for every node, e.g. {"$": "array", "$[].loss": "number"}: what a diff names."""
    out = {path: "|".join(schema["type"])}
    for key, sub in (schema.get("properties") or {}).items():
        out.update(flatten_schema(sub, f"{path}.{key}"))
    if schema.get("items") is not None:
        out.update(flatten_schema(schema["items"], f"{path}[]"))
    return out


def schema_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Each path whose presence or type differs, as `path: A -> B` (`absent` where a side lacks it)."""
    fa, fb = flatten_schema(a), flatten_schema(b)
    return [f"{p}: {fa.get(p, 'absent')} -> {fb.get(p, 'absent')}" for p in sorted(set(fa) | set(fb))
            if fa.get(p) != fb.get(p)]


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way `value` breaks `schema`: a wrong type, a required key missing, a key the schema lacks."""
    kind = type_name(value)
    if kind not in schema["type"]:
        return [f"{path}: {kind}, expected {'|'.join(schema['type'])}"]
    problems: list[str] = []
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        problems += [f"{path}.{k}: missing" for k in schema.get("required", []) if k not in value]
        problems += [f"{path}.{k}: not in the schema" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                problems += validate(v, props[k], f"{path}.{k}")
    elif kind == "array" and schema.get("items") is not None:
        for i, item in enumerate(value):
            found = validate(item, schema["items"], f"{path}[{i}]")
            problems += found
            if len(problems) > 50:  # a long array breaking the same way says it once per item otherwise
                break
    return problems


def summarize_problems(problems: list[str]) -> str:
    shown = "; ".join(problems[:_SHOWN])
    return shown + (f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else "")
