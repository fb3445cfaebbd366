"""Op-level localisation: walk two deep captures of one step in execution order and name the first
record whose outputs differ, with why (same inputs, changed call, RNG, upstream, or a changed op sequence).

Pure functions of the records (parity.trace.deep); running the trainers is parity.explain.locate_runs' job.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from parity.trace import deep as ds

# Diagnoses (`Location.cause`).
SAME_INPUTS = "same-inputs"
CHANGED_CALL = "changed-call"
RNG_STATE = "rng-state"
UPSTREAM = "upstream"
STARTING_STATE = "starting-state"
OP_SEQUENCE = "op-sequence"

_EXPLAIN = {
    SAME_INPUTS: "same inputs, different outputs: nondeterministic kernel or changed op",
    CHANGED_CALL: "same tensor inputs, different arguments: the code calls this op differently",
    RNG_STATE: "same tensor inputs, different random-number generator state: random draws before this op differ",
    UPSTREAM: "different inputs: the divergence comes from upstream, from values no captured op produced "
              "(data loaded in worker processes, numpy, or state set outside torch ops)",
    STARTING_STATE: "different inputs: the divergence comes from upstream, before this step "
                    "(a parameter already differs when the step begins)",
    OP_SEQUENCE: "op sequence differs: a code change (another op, an extra or a missing one)",
}
#: How far past the first structural difference the op sequences are matched to describe it.
_MATCH_WINDOW = 400


@dataclass(frozen=True)
class TensorDifference:
    """How one output (or input) tensor differs, sized from the recorded stats and value samples."""

    role: str
    index: int
    dtype: str
    shape: tuple[int, ...]
    max_abs: float | None
    """Largest |baseline - candidate| over the sampled positions (None: no comparable samples)."""
    max_rel: float | None
    differing_samples: int
    samples: int
    sum_baseline: float | str | None
    sum_candidate: float | str | None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "index": self.index, "dtype": self.dtype, "shape": list(self.shape),
                "max_abs": self.max_abs, "max_rel": self.max_rel, "differing_samples": self.differing_samples,
                "samples": self.samples, "sum_baseline": self.sum_baseline, "sum_candidate": self.sum_candidate}


@dataclass(frozen=True)
class Location:
    """The first record, in execution order, at which the two captures differ, and why."""

    cause: str
    position: int
    """Index in both record streams (they match record for record before it)."""
    baseline: ds.DeepRecord | None
    candidate: ds.DeepRecord | None
    differences: tuple[TensorDifference, ...] = ()
    module_record: ds.DeepRecord | None = None
    """The first module record from here on whose outputs differ while its inputs match (None: none does)."""
    detail: str = ""

    @property
    def explanation(self) -> str:
        return _EXPLAIN[self.cause]

    @property
    def record(self) -> ds.DeepRecord:
        found = self.candidate or self.baseline
        assert found is not None
        return found

    def to_json(self) -> dict[str, Any]:
        def side(r: ds.DeepRecord | None) -> dict | None:
            return None if r is None else {**describe(r), "seq": r.seq, "arguments": r.arguments, "caller": r.caller,
                                           "inputs": [_meta(t) for t in r.inputs], "outputs": [_meta(t) for t in r.outputs]}
        return {"cause": self.cause, "explanation": self.explanation, "detail": self.detail, "position": self.position,
                "baseline": side(self.baseline), "candidate": side(self.candidate),
                "differences": [d.to_json() for d in self.differences],
                "module": None if self.module_record is None else describe(self.module_record)}


def _meta(t: ds.TensorInfo) -> dict[str, Any]:
    return {"digest": t.digest, "dtype": t.dtype, "shape": list(t.shape)}


def module_label(module: str | None) -> str:
    return "outside any module" if module is None else ("the model root" if module == "" else module)


def describe(r: ds.DeepRecord) -> dict[str, Any]:
    """The identity of a record as reports show it."""
    what = {ds.KIND_OP: r.name, ds.KIND_MODULE: "module output" if r.phase == ds.PHASE_FORWARD else "module gradients",
            ds.KIND_GRAD: f"gradient of {r.name}", ds.KIND_STATE: f"parameter {r.name}"}[r.kind]
    return {"kind": r.kind, "what": what, "op": r.name if r.kind == ds.KIND_OP else None, "module": r.module,
            "module_label": module_label(r.module), "phase": r.phase}


def _digests(infos: Sequence[ds.TensorInfo]) -> list[str]:
    return [t.digest for t in infos]


def _number(x: float | str | None) -> float | None:
    return None if x is None else float(x)


def size_difference(role: str, index: int, a: ds.TensorInfo, b: ds.TensorInfo) -> TensorDifference:
    """Max abs/rel difference over the positions both sides sampled (the same ones when shapes match)."""
    pairs = [(_number(x), _number(y)) for x, y in zip(a.samples, b.samples)] if a.shape == b.shape else []
    abs_errors, rel_errors, differing = [], [], 0
    for x, y in pairs:
        if x == y or (math.isnan(x) and math.isnan(y)):
            continue
        differing += 1
        err = abs(x - y)
        abs_errors.append(err)
        scale = max(abs(x), abs(y))
        if scale > 0 and math.isfinite(err):
            rel_errors.append(err / scale)
    return TensorDifference(role, index, b.dtype, b.shape, max(abs_errors) if abs_errors else (0.0 if pairs else None),
                            max(rel_errors) if rel_errors else (0.0 if pairs else None), differing, len(pairs),
                            a.total, b.total)


def _differences(role: str, a: Sequence[ds.TensorInfo], b: Sequence[ds.TensorInfo]) -> list[TensorDifference]:
    return [size_difference(role, i, x, y) for i, (x, y) in enumerate(zip(a, b)) if x.digest != y.digest]


def _first_module(base: Sequence[ds.DeepRecord], cand: Sequence[ds.DeepRecord], start: int) -> ds.DeepRecord | None:
    """The first module record at or after `start` whose outputs differ while its inputs match."""
    for a, b in zip(base[start:], cand[start:]):
        if a.key != b.key:
            return None
        if a.kind == ds.KIND_MODULE and _digests(a.inputs) == _digests(b.inputs) \
                and _digests(a.outputs) != _digests(b.outputs):
            return b
    return None


def _classify(a: ds.DeepRecord, b: ds.DeepRecord) -> tuple[str, str]:
    if a.kind == ds.KIND_STATE:
        return STARTING_STATE, ""
    if _digests(a.inputs) != _digests(b.inputs) or [t.shape for t in a.inputs] != [t.shape for t in b.inputs]:
        changed = [i for i, (x, y) in enumerate(zip(a.inputs, b.inputs)) if x.digest != y.digest]
        return UPSTREAM, f"input {', '.join(map(str, changed)) or '(count)'} differs"
    if a.arguments != b.arguments:
        return CHANGED_CALL, f"baseline ({a.arguments}), candidate ({b.arguments})"
    if a.rng != b.rng:
        return RNG_STATE, ""
    return SAME_INPUTS, ""


def _sequence_difference(base: Sequence[ds.DeepRecord], cand: Sequence[ds.DeepRecord], start: int) -> Location:
    """Describe the first structural difference: an op only one side runs, or one op in place of another."""
    a_keys = [r.key for r in base[start:start + _MATCH_WINDOW]]
    b_keys = [r.key for r in cand[start:start + _MATCH_WINDOW]]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a_keys, b_keys, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        a = base[start + i1] if i1 < i2 else None
        b = cand[start + j1] if j1 < j2 else None
        if tag == "delete":
            detail = f"only the baseline runs {_short(a)}"
        elif tag == "insert":
            detail = f"only the candidate runs {_short(b)}"
        else:
            detail = f"the baseline runs {_short(a)} where the candidate runs {_short(b)}"
        return Location(OP_SEQUENCE, start + min(i1, j1), a, b, detail=detail)
    a = base[start] if start < len(base) else None
    b = cand[start] if start < len(cand) else None
    return Location(OP_SEQUENCE, start, a, b, detail=f"the streams differ in length ({len(base)} and {len(cand)} records)")


def _short(r: ds.DeepRecord | None) -> str:
    if r is None:
        return "nothing"
    d = describe(r)
    return f"{d['what']} ({r.phase}, {d['module_label']})"


def locate_records(base: Sequence[ds.DeepRecord], cand: Sequence[ds.DeepRecord]) -> Location | None:
    """The first record, in execution order, where the captures differ; None when they match throughout."""
    for i, (a, b) in enumerate(zip(base, cand)):
        if a.key != b.key:
            return _sequence_difference(base, cand, i)
        if _digests(a.outputs) == _digests(b.outputs):
            continue
        cause, detail = _classify(a, b)
        differences = _differences("output", a.outputs, b.outputs)
        if cause in (UPSTREAM, STARTING_STATE) and a.kind != ds.KIND_STATE:
            differences = _differences("input", a.inputs, b.inputs) + differences
        return Location(cause, i, a, b, tuple(differences), _first_module(base, cand, i), detail)
    if len(base) != len(cand):
        return _sequence_difference(base, cand, min(len(base), len(cand)))
    return None


@dataclass(frozen=True)
class DeepPair:
    """The two deep captures of one step that were walked."""

    step: int
    baseline: Path
    candidate: Path
    baseline_records: int
    candidate_records: int
    location: Location | None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "baseline": str(self.baseline), "candidate": str(self.candidate),
                "records": [self.baseline_records, self.candidate_records],
                "location": None if self.location is None else self.location.to_json()}


def locate_files(baseline: Path, candidate: Path) -> DeepPair:
    """Read two deep files and walk them (DeepFileError for unreadable or mismatched captures)."""
    a, b = ds.read_deep(baseline), ds.read_deep(candidate)
    if a.step != b.step:
        raise ds.DeepFileError(f"{candidate}: captures step {b.step}, {baseline} step {a.step}")
    return DeepPair(a.step, baseline, candidate, len(a.records), len(b.records), locate_records(a.records, b.records))


__all__ = ["DeepPair", "Location", "TensorDifference", "describe", "locate_files", "locate_records", "module_label"]
