"""The deep-capture file: one step's module and ATen-op records, in execution order, shared by writer and reader.

Stdlib only, like `schema`: the injected capture writes it, `parity.explain.locate` reads it.

A deep file (`deep-rank<N>.jsonl` in a run directory) holds a header, then one record per event of the
captured step in the order it happened, then an end record. Every record is one `DeepRecord`:
  * `state`: a parameter as the step began (captured once, when capture arms);
  * `op`: one dispatched ATen op: its tensor inputs, non-tensor arguments, RNG state (random ops) and outputs;
  * `module`: a module finished its forward (inputs -> outputs) or its backward (grad outputs -> grad inputs);
  * `grad`: the gradient computed for one parameter (before accumulation into `.grad`).
Digests are exact and order-sensitive (wsum64 of the tensor's bytes, with dtype and shape); `stats` and
`samples` are there only to size a difference once the digests say there is one.

Changelog of DEEP_VERSION:
  1 -- first version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

DEEP_VERSION = 1
#: File name of one process's deep capture inside a run directory.
DEEP_FILE_PATTERN = "deep-rank{rank}.jsonl"

# Record kinds (`DeepRecord.kind`).
KIND_STATE = "state"
KIND_OP = "op"
KIND_MODULE = "module"
KIND_GRAD = "grad"
KINDS = (KIND_STATE, KIND_OP, KIND_MODULE, KIND_GRAD)
#: Framing lines around the records (their `type`).
TYPE_HEADER = "deep_header"
TYPE_RECORD = "deep_record"
TYPE_END = "deep_end"

# Phases (`DeepRecord.phase`).
PHASE_START = "start"
"""Before the step's first op: the parameters it starts from."""
PHASE_FORWARD = "forward"
"""Grad-enabled code or a module's forward (the loss computation outside modules too)."""
PHASE_BACKWARD = "backward"
"""Run by the autograd engine."""
PHASE_NO_GRAD = "no_grad"
"""Grad-disabled code outside any module: gradient clipping, the optimizer update."""

#: How many values of each floating output are kept (evenly spaced positions), to size a difference.
SAMPLE_SIZE = 64


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a record: exact digest, dtype, shape, and (floating tensors) values to size a difference."""

    digest: str
    dtype: str
    shape: tuple[int, ...]
    total: float | str | None = None
    """Sum of the elements in float64 (a string for non-finite values); None for non-numeric tensors."""
    absmax: float | str | None = None
    samples: tuple[float | str, ...] = ()
    """Values at SAMPLE_SIZE evenly spaced flat positions (all of them for small tensors), as float64."""

    @classmethod
    def from_json(cls, data: dict) -> "TensorInfo":
        return cls(data["digest"], data["dtype"], tuple(data["shape"]), data.get("total"), data.get("absmax"),
                   tuple(data.get("samples", ())))


@dataclass(frozen=True)
class DeepRecord:
    """One event of the captured step. Identity for alignment: (kind, phase, module, name)."""

    seq: int
    kind: str
    phase: str
    module: str
    """Fully qualified name of the innermost module running ("" = the model root; None = outside modules)."""
    name: str
    """The ATen op (`aten.gelu.default`), the parameter (state, grad), or "" for a module record."""
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    arguments: str = ""
    """The non-tensor arguments (ops), as text; tensors appear as `T`."""
    rng: str | None = None
    """Digest of the generator state a random op draws from (ops tagged nondeterministic_seeded)."""
    caller: str = ""
    """Nearest trainer source line (`path:line in function`); empty on autograd's device threads."""

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        return self.kind, self.phase, self.module, self.name

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DeepRecord":
        return cls(data["seq"], data["kind"], data["phase"], data["module"], data["name"],
                   tuple(TensorInfo.from_json(t) for t in data.get("inputs", ())),
                   tuple(TensorInfo.from_json(t) for t in data.get("outputs", ())),
                   data.get("arguments", ""), data.get("rng"), data.get("caller", ""))


@dataclass(frozen=True)
class DeepCapture:
    """A deep file read back: which step, and its records in execution order."""

    path: Path
    step: int
    rank: int
    records: tuple[DeepRecord, ...]
    complete: bool
    """False when the process ended before the step did (no end record)."""


class DeepFileError(ValueError):
    """A deep file that cannot be read (the message starts with its path)."""


def read_deep(path: str | Path) -> DeepCapture:
    """Read a deep file; DeepFileError names the path and line of anything unreadable."""
    path = Path(path)
    header, records, complete = None, [], False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DeepFileError(f"{path}: cannot read ({exc.strerror})") from None
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
            kind = data["type"]
            if kind == TYPE_HEADER:
                if data.get("version") != DEEP_VERSION:
                    raise DeepFileError(f"{path}:{number}: wrong deep version: {data.get('version')} instead of {DEEP_VERSION}")
                header = data
            elif kind == TYPE_RECORD:
                records.append(DeepRecord.from_json(data["record"]))
            elif kind == TYPE_END:
                complete = True
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, DeepFileError):
                raise
            raise DeepFileError(f"{path}:{number}: not a deep-capture record ({exc})") from None
    if header is None:
        raise DeepFileError(f"{path}: no deep_header record (not a deep-capture file)")
    return DeepCapture(path, int(header["step"]), int(header["rank"]), tuple(records), complete)
