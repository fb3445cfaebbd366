"""Typed read access to trace records: step fields, recorded scalars and run metadata, named once.

The reader hands out plain dicts (decoding 100,000 steps into objects would double the load time), so
these views wrap a record without copying it and decode a field only when it is asked for. Code that
walks every step of two traces (first_mismatch, the loss fast path) indexes the dicts with the schema
constants instead: a list comprehension over `s.get(F_PARAMS)` is what keeps compare fast, and a view
per step would cost one object per step and side.

Nothing here validates: the reader has already refused records whose fields have the wrong type, so an
accessor only has to tell "recorded" from "not recorded" (absent, None, or an older schema version).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from parity.trace.schema import (
    CLIP_MAX_NORM, CLIP_NORM_TYPE, E_LOAD, E_STATUS, F_BATCH, F_CLIP, F_EPOCH, F_EVENTS, F_FIELDS, F_GRAD_NORM,
    F_GROUPS, F_LABELS, F_LOADER, F_LOSSES, F_MODE, F_OPTIM_STATE, F_PARAMS, F_PEAK_MEM, F_RNG, F_SAMPLES,
    F_SKIPPED, F_STEP, F_WALL_MS, G_INITIAL_LR, G_LR, GIT_COMMIT, GIT_DIRTY, H_DETERMINISTIC, H_DIGEST, H_LEVEL,
    H_RANK, H_RUN, H_SEED, H_SKIP_LOADS, LABELS_FIELD, LABELS_HIST, META_ARGPARSE, META_ARGPARSE_OPTIONS, META_CAPTURE_ERROR,
    META_CONFIG_OBJECTS, META_DATALOADERS, META_MODEL, META_NONDETERMINISTIC_OPS, META_NUMERICS_AT_END,
    META_OPTIMIZERS, META_RNG_AT_FIRST_BATCH, META_SCHEDULERS, META_SKIPPED_CALLS, META_SOURCES, MODE_EVAL_MODULES,
    MODE_N_EVAL, MODE_ROOT, MODE_TRAINING, OPT_CLASS, OPT_DEFAULTS, OPT_N_PARAMS, OPT_PARAM_GROUPS, RUN_ARGV, RUN_CPUS, RUN_DEVICE, RUN_ENV, RUN_GIT,
    RUN_LOAD, RUN_NUMERICS, V_NAN, S_BITS, S_DTYPE, S_SCALE, S_SOURCE, S_VALUE, SCHED_STATE, SRC_FILES,
)

if TYPE_CHECKING:  # the reader imports nothing from here; only annotations need it
    from parity.trace.reader import Trace

#: Group keys that are the learning rate rather than another hyperparameter.
_LR_KEYS = (G_LR, G_INITIAL_LR)


# -- recorded scalars ------------------------------------------------------------------------------

def _ordered(bits: int, width: int) -> int:
    """IEEE bits as an integer that orders like the float (negative floats count down from zero)."""
    sign = 1 << (width - 1)
    return -(bits & (sign - 1)) if bits & sign else bits


def ulp_distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> int | None:
    """Units in the last place between two recorded scalars (dicts) of one dtype; None if the dtypes
    differ or either is NaN. Takes the dicts so that checks need not build a RecordedFloat per step."""
    if a.get(S_DTYPE) != b.get(S_DTYPE) or V_NAN in (a.get(S_VALUE), b.get(S_VALUE)):
        return None
    width = 4 * len(a[S_BITS])
    return abs(_ordered(int(a[S_BITS], 16), width) - _ordered(int(b[S_BITS], 16), width))


def float64_ulps(a: float, b: float) -> int | None:
    """Units in the last place between two Python floats (None when either is NaN). Learning rates are
    recorded as JSON numbers, so their tolerance in ulps is counted in float64."""
    if a != a or b != b:
        return None
    bits_a, bits_b = (struct.unpack("<Q", struct.pack("<d", x))[0] for x in (a, b))
    return abs(_ordered(bits_a, 64) - _ordered(bits_b, 64))


@dataclass(frozen=True, slots=True)
class RecordedFloat:
    """One scalar as the recorder wrote it: exact bits, dtype, and the value (a number, or "nan"/"inf"/"-inf")."""

    bits: str
    dtype: str
    value: float | str
    scale: RecordedFloat | None = None
    """Under GradScaler, the scale the loss was multiplied by (the loss itself is unscaled)."""
    source: str | None = None
    """For a gradient norm: "clip_grad_norm_" (the trainer's own call) or "parity" (computed by capture)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> RecordedFloat | None:
        if not record:
            return None
        scale = record.get(S_SCALE)
        return cls(record[S_BITS], record[S_DTYPE], record[S_VALUE], cls.from_record(scale) if scale else None,
                   record.get(S_SOURCE))

    def as_float(self) -> float:
        """The value as a float; the trace's "nan"/"inf"/"-inf" strings parse as themselves."""
        return float(self.value)

    @property
    def is_nan(self) -> bool:
        return self.value == V_NAN

    def same_bits(self, other: RecordedFloat) -> bool:
        """Bit-identical: same bits and dtype (NaN compares by its bit pattern)."""
        return self.bits == other.bits and self.dtype == other.dtype

    def ulps_to(self, other: RecordedFloat) -> int | None:
        """Units in the last place to `other` (None if the dtypes differ or either is NaN)."""
        return ulp_distance({S_BITS: self.bits, S_DTYPE: self.dtype, S_VALUE: self.value},
                            {S_BITS: other.bits, S_DTYPE: other.dtype, S_VALUE: other.value})


@dataclass(frozen=True, slots=True)
class Clip:
    """The step's gradient clipping: threshold and norm type (None where the call did not give them)."""

    max_norm: float | None
    norm_type: float | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> Clip | None:
        if not record:
            return None
        return cls(_maybe_float(record.get(CLIP_MAX_NORM)), _maybe_float(record.get(CLIP_NORM_TYPE)))


@dataclass(frozen=True, slots=True)
class TrainingMode:
    """Training mode at the step's first grad-enabled root forward."""

    root: str
    training: bool
    eval_modules: tuple[str, ...]
    """Names of submodules in eval mode (at most 20 recorded)."""
    n_eval: int
    """How many submodules were in eval mode (complete, unlike `eval_modules`)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> TrainingMode | None:
        if not isinstance(record, Mapping):
            return None
        return cls(str(record.get(MODE_ROOT, "")), bool(record.get(MODE_TRAINING)),
                   tuple(record.get(MODE_EVAL_MODULES) or ()), int(record.get(MODE_N_EVAL) or 0))


@dataclass(frozen=True, slots=True)
class LabelCounts:
    """Target-id histogram of the step's loader batches: {str(target id): count} of one target field."""

    field: str
    hist: dict[str, int]

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> LabelCounts | None:
        if not isinstance(record, Mapping) or not record.get(LABELS_FIELD):
            return None
        hist = record.get(LABELS_HIST)
        counts = {str(k): int(v) for k, v in hist.items() if isinstance(v, int)} if isinstance(hist, Mapping) else {}
        return cls(str(record[LABELS_FIELD]), counts)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- step records -----------------------------------------------------------------------------------

class StepView:
    """A step record read through named, typed properties; never modifies or copies the record.

    Cheap to make (one slot), so `StepView(trace.steps[i])` is fine wherever a few steps are read; loops
    over every step of a trace should index the dicts with the schema constants instead.
    """

    __slots__ = ("record",)

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record

    def __repr__(self) -> str:
        return f"StepView(step={self.record.get(F_STEP)})"

    @property
    def index(self) -> int:
        """The update's 0-based number (the record's `step` field)."""
        return int(self.record[F_STEP])

    @property
    def events(self) -> list[str]:
        return self.record.get(F_EVENTS) or []

    # -- scalars
    @property
    def losses(self) -> list[RecordedFloat]:
        return [RecordedFloat.from_record(loss) for loss in self.record.get(F_LOSSES) or ()]

    @property
    def first_loss(self) -> RecordedFloat | None:
        """The loss of the step's first backward (the one plotted and reported)."""
        losses = self.record.get(F_LOSSES)
        return RecordedFloat.from_record(losses[0]) if losses else None

    @property
    def grad_norm(self) -> RecordedFloat | None:
        """Total gradient norm before clipping, or None where it was not recorded."""
        return RecordedFloat.from_record(self.record.get(F_GRAD_NORM))

    @property
    def clip(self) -> Clip | None:
        return Clip.from_record(self.record.get(F_CLIP))

    # -- hyperparameters
    @property
    def groups(self) -> list[dict[str, Any]]:
        """Every hyperparameter of every param group, as this update used them."""
        return self.record.get(F_GROUPS) or []

    @property
    def lrs(self) -> list[float]:
        """The learning rate of each param group that has one."""
        return [float(g[G_LR]) for g in self.record.get(F_GROUPS) or () if G_LR in g]

    @property
    def lr(self) -> float | None:
        """The learning rate of the first group (the one plotted), or None."""
        lrs = self.lrs
        return lrs[0] if lrs else None

    @property
    def hyperparameters(self) -> list[dict[str, Any]]:
        """Each group's hyperparameters other than the learning rate (betas, weight decay, ...)."""
        return [{k: v for k, v in g.items() if k not in _LR_KEYS} for g in self.record.get(F_GROUPS) or ()]

    # -- digests
    @property
    def batch(self) -> list[str] | None:
        """"<root module>:<digest>" of each root forward's inputs; None where digests were not taken."""
        return self.record.get(F_BATCH)

    @property
    def loader(self) -> list[str] | None:
        """Digest of each DataLoader batch the step trained on; None where digests were not taken."""
        return self.record.get(F_LOADER)

    @property
    def params(self) -> str | None:
        return self.record.get(F_PARAMS)

    @property
    def optim_state(self) -> str | None:
        return self.record.get(F_OPTIM_STATE)

    @property
    def rng(self) -> dict[str, str | None] | None:
        return self.record.get(F_RNG)

    # -- data (schema v2; None in version 1 traces)
    @property
    def fields(self) -> list[dict[str, str]] | None:
        """Per loader batch: {field name: digest}."""
        return self.record.get(F_FIELDS)

    @property
    def samples(self) -> str | None:
        """Order-insensitive digest of the step's rows (16 hex digits)."""
        return self.record.get(F_SAMPLES)

    @property
    def labels(self) -> LabelCounts | None:
        return LabelCounts.from_record(self.record.get(F_LABELS))

    @property
    def epoch(self) -> int | None:
        return self.record.get(F_EPOCH)

    @property
    def mode(self) -> TrainingMode | None:
        return TrainingMode.from_record(self.record.get(F_MODE))

    # -- bookkeeping
    @property
    def skipped(self) -> bool:
        """GradScaler skipped the update (inf/NaN gradients)."""
        return bool(self.record.get(F_SKIPPED))

    @property
    def wall_ms(self) -> float | None:
        return self.record.get(F_WALL_MS)

    @property
    def peak_mem_bytes(self) -> int | None:
        return self.record.get(F_PEAK_MEM)


def step_views(trace: Trace) -> list[StepView]:
    """Every step of `trace` as a view (one small object per step: not for the compare hot paths)."""
    return [StepView(s) for s in trace.steps]


# -- run metadata ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OptimizerRecord:
    """One optimizer as constructed: class, every default hyperparameter (hard-coded ones included)."""

    class_name: str
    defaults: dict[str, Any]
    param_groups: int | None = None
    params: int | None = None


@dataclass(frozen=True, slots=True)
class SchedulerRecord:
    """One LR scheduler as constructed: class and its state_dict (private keys left out)."""

    class_name: str
    state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {OPT_CLASS: self.class_name, SCHED_STATE: self.state}


class TraceMeta:
    """A trace's header, meta records and end record read by name; absent keys read as empty or None.

    Meta records of a killed run may be missing (they are written when known); the accessors never raise
    for that, so checks decide NOT_COMPARED themselves.
    """

    __slots__ = ("header", "meta", "end")

    def __init__(self, header: Mapping[str, Any], meta: Mapping[str, Any], end: Mapping[str, Any] | None = None) -> None:
        self.header, self.meta, self.end = header, meta, end

    @classmethod
    def of(cls, trace: Trace) -> TraceMeta:
        return cls(trace.header, trace.meta, trace.end)

    # -- meta records
    @property
    def argparse(self) -> dict[str, Any]:
        """The parsed command-line namespace ({} when the trainer used no argparse)."""
        return self.meta.get(META_ARGPARSE) or {}

    @property
    def argparse_options(self) -> dict[str, list[dict[str, Any]]]:
        """How each argparse dest is set on a command line ({} for traces recorded before parity kept it)."""
        return self.meta.get(META_ARGPARSE_OPTIONS) or {}

    @property
    def optimizers(self) -> list[OptimizerRecord]:
        return [OptimizerRecord(o[OPT_CLASS], o[OPT_DEFAULTS], o.get(OPT_PARAM_GROUPS), o.get(OPT_N_PARAMS))
                for o in self.meta.get(META_OPTIMIZERS) or ()]

    @property
    def schedulers(self) -> list[SchedulerRecord]:
        return [SchedulerRecord(s[OPT_CLASS], s.get(SCHED_STATE) or {}) for s in self.meta.get(META_SCHEDULERS) or ()]

    @property
    def numerics_at_end(self) -> dict[str, Any]:
        return self.meta.get(META_NUMERICS_AT_END) or {}

    @property
    def nondeterministic_ops(self) -> list[str]:
        return self.meta.get(META_NONDETERMINISTIC_OPS) or []

    @property
    def skipped_calls(self) -> list[str]:
        return self.meta.get(META_SKIPPED_CALLS) or []

    @property
    def capture_error(self) -> dict[str, Any] | None:
        error = self.meta.get(META_CAPTURE_ERROR)
        return error if isinstance(error, dict) else None

    @property
    def model(self) -> dict[str, Any] | None:
        """Structure of the trained model at the first update (schema v2)."""
        model = self.meta.get(META_MODEL)
        return model if isinstance(model, dict) else None

    @property
    def dataloaders(self) -> list[dict[str, Any]]:
        """Every DataLoader constructed, in order, with its settings and dataset description (schema v2)."""
        loaders = self.meta.get(META_DATALOADERS)
        return [d for d in loaders if isinstance(d, dict)] if isinstance(loaders, list) else []

    @property
    def config_objects(self) -> dict[str, Any]:
        objects = self.meta.get(META_CONFIG_OBJECTS)
        return objects if isinstance(objects, dict) else {}

    @property
    def sources(self) -> dict[str, Any] | None:
        """The trainer's own source files, hashed (None unless recorded with its `files` table)."""
        sources = self.meta.get(META_SOURCES)
        return sources if isinstance(sources, dict) and isinstance(sources.get(SRC_FILES), dict) else None

    @property
    def rng_at_first_batch(self) -> dict[str, str | None] | None:
        rng = self.meta.get(META_RNG_AT_FIRST_BATCH)
        return rng if isinstance(rng, dict) else None

    # -- header
    @property
    def run(self) -> dict[str, Any]:
        """The process's context when capture started (argv, versions, device, numerics, git, load)."""
        return self.header.get(H_RUN) or {}

    @property
    def git(self) -> dict[str, Any]:
        return self.run.get(RUN_GIT) or {}

    @property
    def commit(self) -> str | None:
        return self.git.get(GIT_COMMIT) or None

    @property
    def dirty(self) -> bool:
        return bool(self.git.get(GIT_DIRTY))

    @property
    def argv(self) -> list[str] | None:
        return self.run.get(RUN_ARGV)

    @property
    def numerics(self) -> dict[str, Any]:
        return self.run.get(RUN_NUMERICS) or {}

    @property
    def env(self) -> dict[str, Any]:
        return self.run.get(RUN_ENV) or {}

    @property
    def device(self) -> str | None:
        return self.run.get(RUN_DEVICE)

    @property
    def cpus(self) -> int | None:
        return self.run.get(RUN_CPUS)

    @property
    def load_at_start(self) -> list[float] | None:
        return self.run.get(RUN_LOAD)

    @property
    def load_at_end(self) -> list[float] | None:
        return (self.end or {}).get(E_LOAD)

    @property
    def end_status(self) -> str | None:
        return (self.end or {}).get(E_STATUS)

    @property
    def rank(self) -> int:
        return int(self.header.get(H_RANK, 0))

    @property
    def seed(self) -> int | None:
        return self.header.get(H_SEED)

    @property
    def deterministic(self) -> bool:
        return bool(self.header.get(H_DETERMINISTIC))

    @property
    def level(self) -> str | None:
        return self.header.get(H_LEVEL)

    @property
    def skip_loads(self) -> list[str]:
        return self.header.get(H_SKIP_LOADS) or []

    @property
    def digest(self) -> str | None:
        """Digest algorithm version: digests of two traces compare only when these agree."""
        return self.header.get(H_DIGEST)
