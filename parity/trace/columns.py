"""Columnar form of a trace's steps: the per-step scalars and digests compare's checks scan, as numpy arrays.

A check that walks every step of two 100,000-step traces in Python spends its time on dict lookups; the
same walk over arrays is a handful of vectorised comparisons. `StepColumns` holds, per step, exactly what
the checks read, in a form that compares the way the records do:

- hex strings (loss and gradient-norm bits, parameter/optimizer/sample digests, batch digests) as
  (uint64 value, digit count): equal strings iff equal pairs, for lowercase strings of at most 16 digits;
- recorded floats as (float64, kind), kind telling a number from the "nan"/"inf"/"-inf" spellings;
- values that repeat (event sequences, clip settings, param groups without their lr, dtypes, batch roots)
  as ids into per-trace tables; two traces' tables are matched by Python equality (`joint_ids`);
- lists (losses, param groups, loader and batch digests) as flat arrays with per-step offsets.

A step whose field does not fit that form (uppercase or longer hex, an lr that is not a number, an extra
key in a loss record, ...) marks its channel *irregular*; checks then walk the records of that channel as
they always did, so the columns never change a result, they only make the common case fast.
"""

from __future__ import annotations

import math
import re
from array import array
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import numpy as np

try:
    from orjson import OPT_SORT_KEYS
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - the reader's fallback: canonical keys from the stdlib encoder
    import json

    OPT_SORT_KEYS = None

    def _dumps(value: Any, option: Any = None) -> str:
        return json.dumps(value, sort_keys=True)

from parity.trace.schema import (F_BATCH, F_CLIP, F_EPOCH, F_EVENTS, F_GRAD_NORM, F_GROUPS, F_LOADER, F_LOSSES, F_MODE,
                                 F_OPTIM_STATE, F_PARAMS, F_SAMPLES, G_INITIAL_LR, G_LR, MODE_N_EVAL, MODE_TRAINING,
                                 S_BITS, S_DTYPE, S_SCALE, S_VALUE, V_INF, V_NAN, V_NEG_INF)

#: Bump when the arrays or tables change meaning: caches written by another layout are rebuilt.
LAYOUT_VERSION = 1

# Channels (the unit a check falls back on when a trace does not fit the columns).
EVENTS, LOSS, GRAD_NORM, LR, PARAMS, OPTIM_STATE = "events", "loss", "grad_norm", "lr", "params", "optim_state"
LOADER, BATCH, SAMPLES, EPOCH, MODE = "loader", "batch", "samples", "epoch", "mode"

#: Kinds of a recorded float: a JSON number, or one of the non-finite spellings.
KIND_NUMBER, KIND_NAN, KIND_INF, KIND_NEG_INF = 0, 1, 2, 3
_NON_FINITE = {V_NAN: (float("nan"), KIND_NAN), V_INF: (float("inf"), KIND_INF), V_NEG_INF: (float("-inf"), KIND_NEG_INF)}
#: Field states: not recorded (absent or null), recorded.
ABSENT, PRESENT = 0, 1
#: States of a loss's `scale`: key absent, null, a recorded scalar (records compare these apart).
SCALE_ABSENT, SCALE_NULL, SCALE_PRESENT = 0, 1, 2

#: Array name -> array typecode. `*_off` arrays hold n+1 offsets into the flat arrays after them.
ARRAYS = {
    "events": "i",
    "loss_off": "q", "l_bits": "Q", "l_len": "B", "l_dtype": "i", "l_val": "d", "l_kind": "b", "l_sstate": "b",
    "ls_bits": "Q", "ls_len": "B", "ls_dtype": "i", "ls_val": "d", "ls_kind": "b",
    "gn_state": "b", "gn_bits": "Q", "gn_len": "B", "gn_dtype": "i", "gn_val": "d", "gn_kind": "b",
    "clip": "i",
    "grp_state": "b", "grp_off": "q", "g_rest": "i", "g_haslr": "b", "g_lr": "d",
    "params_state": "b", "params_bits": "Q", "params_len": "B",
    "optim_state_state": "b", "optim_state_bits": "Q", "optim_state_len": "B",
    "ld_off": "q", "ld_bits": "Q", "ld_len": "B",
    "bt_off": "q", "bt_root": "i", "bt_colon": "b", "bt_bits": "Q", "bt_len": "B",
    "smp_state": "b", "smp_bits": "Q", "smp_len": "B",
    "ep_state": "b", "ep": "q",
    "md_state": "b", "md_train": "b", "md_neval": "q",
}
#: Tables of values that repeat: events (lists of str), dtypes (str), clip (the clip record or None),
#: rest (a param group without its lr), roots (the module part of a batch digest).
TABLES = ("events", "dtypes", "clip", "rest", "roots")

_HEX = re.compile(r"[0-9a-f]{1,16}").fullmatch
_EXACT_INT = 1 << 53
_INT64 = 1 << 63


class Irregular(Exception):
    """A field the columns cannot hold exactly; its channel is then read from the records."""


def _hex(text: Any) -> tuple[int, int]:
    if type(text) is not str or not _HEX(text):
        raise Irregular
    return int(text, 16), len(text)


def _float(value: Any) -> tuple[float, int]:
    kind = type(value)
    if kind is float and math.isfinite(value):  # a float NaN (never in a file) compares by identity in a list
        return value, KIND_NUMBER
    if kind is int and -_EXACT_INT <= value <= _EXACT_INT:
        return float(value), KIND_NUMBER
    if kind is str and value in _NON_FINITE:
        return _NON_FINITE[value]
    raise Irregular


def freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON-like value: two values are == exactly when their stand-ins are.
    Containers are tagged so that a list never equals a tuple or a dict, as in Python."""
    kind = type(value)
    if kind is dict:
        return (1, frozenset((k, freeze(v)) for k, v in value.items()))
    if kind is list:
        return (2, tuple(freeze(v) for v in value))
    if kind is tuple:
        return (3, tuple(freeze(v) for v in value))
    return value


class StepColumns:
    """The columns of one trace's steps (see the module docstring); read-only once built.

    `irregular` names the channels some step did not fit: their arrays are incomplete and must not be read.
    """

    __slots__ = ("n", "arrays", "tables", "irregular")

    def __init__(self, n: int, arrays: dict[str, np.ndarray], tables: dict[str, list], irregular: Iterable[str]) -> None:
        self.n, self.arrays, self.tables, self.irregular = n, arrays, tables, frozenset(irregular)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise AttributeError(name) from None

    def regular(self, *channels: str) -> bool:
        return not self.irregular.intersection(channels)


class ColumnBuilder:
    """Accumulates step records into StepColumns, one `add` per step in order.

    `json_values=True` (records decoded from JSON) interns repeated values by their canonical JSON;
    otherwise (records built in Python, where a tuple may stand for a list) by `freeze`.
    """

    def __init__(self, json_values: bool = True) -> None:
        self.n = 0
        self._arrays = {name: array(code) for name, code in ARRAYS.items()}
        for name in ARRAYS:
            if name.endswith("_off"):
                self._arrays[name].append(0)
        self._tables: dict[str, list] = {name: [] for name in TABLES}
        self._ids: dict[str, dict] = {name: {} for name in TABLES}
        self._key = _json_key if json_values else freeze
        self.irregular: set[str] = set()
        self._adders = ((EVENTS, self._add_events), (LOSS, self._add_losses), (GRAD_NORM, self._add_grad_norm),
                        (LR, self._add_groups), (PARAMS, self._add_digest), (OPTIM_STATE, self._add_digest),
                        (LOADER, self._add_loader), (BATCH, self._add_batch), (SAMPLES, self._add_samples),
                        (EPOCH, self._add_epoch), (MODE, self._add_mode))

    def _intern(self, table: str, key: Any, value: Any) -> int:
        ids = self._ids[table]
        found = ids.get(key)
        if found is None:
            found = ids[key] = len(self._tables[table])
            self._tables[table].append(value)
        return found

    def add(self, record: dict[str, Any]) -> None:
        self.n += 1
        for channel, add in self._adders:
            if channel in self.irregular:
                continue
            try:
                add(record, channel)
            except _UNFIT:
                # The records path reads this channel and fails (or succeeds) exactly as it always did.
                self.irregular.add(channel)
        clip = record.get(F_CLIP)
        self._arrays["clip"].append(self._intern("clip", self._key(clip), clip))

    def _add_events(self, record: dict[str, Any], _: str) -> None:
        events = record[F_EVENTS]
        if type(events) is not list:
            raise Irregular
        self._arrays["events"].append(self._intern("events", tuple(events), events))

    def _scalar(self, rec: dict[str, Any], prefix: str) -> None:
        bits, length = _hex(rec[S_BITS])
        value, kind = _float(rec[S_VALUE])
        a = self._arrays
        a[prefix + "bits"].append(bits)
        a[prefix + "len"].append(length)
        a[prefix + "dtype"].append(self._intern("dtypes", rec[S_DTYPE], rec[S_DTYPE]))
        a[prefix + "val"].append(value)
        a[prefix + "kind"].append(kind)

    def _add_losses(self, record: dict[str, Any], _: str) -> None:
        a = self._arrays
        for loss in record.get(F_LOSSES) or ():
            # Records compare whole: a key the columns do not hold would be compared by nobody.
            if type(loss) is not dict or not loss.keys() <= _LOSS_KEYS or type(loss[S_DTYPE]) is not str:
                raise Irregular
            self._scalar(loss, "l_")
            scale = loss.get(S_SCALE, _MISSING)
            if scale is _MISSING or scale is None:
                a["l_sstate"].append(SCALE_ABSENT if scale is _MISSING else SCALE_NULL)
                for name, zero in _SCALE_ZEROS:
                    a[name].append(zero)
            else:
                if type(scale) is not dict or not scale.keys() <= _SCALE_KEYS or type(scale[S_DTYPE]) is not str:
                    raise Irregular
                a["l_sstate"].append(SCALE_PRESENT)
                self._scalar(scale, "ls_")
        a["loss_off"].append(len(a["l_bits"]))

    def _add_grad_norm(self, record: dict[str, Any], _: str) -> None:
        norm = record.get(F_GRAD_NORM)
        a = self._arrays
        if norm is None:
            a["gn_state"].append(ABSENT)
            for name in ("gn_bits", "gn_len", "gn_dtype", "gn_kind"):
                a[name].append(0)
            a["gn_val"].append(0.0)
            return
        if type(norm) is not dict or type(norm[S_DTYPE]) is not str:
            raise Irregular
        a["gn_state"].append(PRESENT)
        self._scalar(norm, "gn_")

    def _add_groups(self, record: dict[str, Any], _: str) -> None:
        groups = record.get(F_GROUPS)
        a = self._arrays
        a["grp_state"].append(ABSENT if groups is None else PRESENT)
        for group in groups or ():
            if type(group) is not dict:
                raise Irregular
            lr = group.get(G_LR, _MISSING)
            if lr is _MISSING:
                rest, has_lr, value = group, 0, 0.0
            else:
                if not (type(lr) is float and math.isfinite(lr)) and \
                        (type(lr) is not int or not -_EXACT_INT <= lr <= _EXACT_INT):
                    raise Irregular
                rest, has_lr, value = {k: v for k, v in group.items() if k != G_LR}, 1, float(lr)
            a["g_rest"].append(self._intern("rest", self._key(rest), rest))
            a["g_haslr"].append(has_lr)
            a["g_lr"].append(value)
        a["grp_off"].append(len(a["g_rest"]))

    def _add_digest(self, record: dict[str, Any], channel: str) -> None:
        field = F_PARAMS if channel == PARAMS else F_OPTIM_STATE
        value = record.get(field)
        a = self._arrays
        bits, length = (0, 0) if value is None else _hex(value)
        a[channel + "_state"].append(ABSENT if value is None else PRESENT)
        a[channel + "_bits"].append(bits)
        a[channel + "_len"].append(length)

    def _add_loader(self, record: dict[str, Any], _: str) -> None:
        a = self._arrays
        for digest in record.get(F_LOADER) or ():
            bits, length = _hex(digest)
            a["ld_bits"].append(bits)
            a["ld_len"].append(length)
        a["ld_off"].append(len(a["ld_bits"]))

    def _add_batch(self, record: dict[str, Any], _: str) -> None:
        a = self._arrays
        for entry in record.get(F_BATCH) or ():
            if type(entry) is not str:
                raise Irregular
            root, colon, digest = entry.rpartition(":")
            bits, length = _hex(digest)
            a["bt_root"].append(self._intern("roots", root, root))
            a["bt_colon"].append(1 if colon else 0)  # "abc" and ":abc": the same (empty) root, other entries
            a["bt_bits"].append(bits)
            a["bt_len"].append(length)
        a["bt_off"].append(len(a["bt_bits"]))

    def _add_samples(self, record: dict[str, Any], _: str) -> None:
        value = record.get(F_SAMPLES)
        bits, length = (0, 0) if value is None else _hex(value)
        a = self._arrays
        a["smp_state"].append(ABSENT if value is None else PRESENT)
        a["smp_bits"].append(bits)
        a["smp_len"].append(length)

    def _add_epoch(self, record: dict[str, Any], _: str) -> None:
        epoch = record.get(F_EPOCH)
        a = self._arrays
        if type(epoch) is int and -_INT64 <= epoch < _INT64:
            a["ep_state"].append(PRESENT)
            a["ep"].append(epoch)
        elif not isinstance(epoch, int):  # what data's per-epoch sums skip
            a["ep_state"].append(ABSENT)
            a["ep"].append(0)
        else:
            raise Irregular

    def _add_mode(self, record: dict[str, Any], _: str) -> None:
        mode = record.get(F_MODE)
        a = self._arrays
        if type(mode) is not dict:
            a["md_state"].append(ABSENT)
            a["md_train"].append(0)
            a["md_neval"].append(0)
            return
        n_eval = int(mode.get(MODE_N_EVAL) or 0)
        if not -_INT64 <= n_eval < _INT64:
            raise Irregular
        a["md_state"].append(PRESENT)
        a["md_train"].append(1 if mode.get(MODE_TRAINING) else 0)
        a["md_neval"].append(n_eval)

    def finish(self) -> StepColumns:
        arrays = {name: np.frombuffer(arr, dtype=np.dtype(arr.typecode)) if len(arr) else
                  np.zeros(0, dtype=np.dtype(arr.typecode)) for name, arr in self._arrays.items()}
        return StepColumns(self.n, arrays, self._tables, self.irregular)


_MISSING = object()
#: What a field that does not fit the columns raises while being added.
_UNFIT = (Irregular, KeyError, TypeError, ValueError, AttributeError, OverflowError)
_LOSS_KEYS = frozenset((S_BITS, S_DTYPE, S_VALUE, S_SCALE))
_SCALE_KEYS = frozenset((S_BITS, S_DTYPE, S_VALUE))
_SCALE_ZEROS = (("ls_bits", 0), ("ls_len", 0), ("ls_dtype", 0), ("ls_val", 0.0), ("ls_kind", 0))


def _json_key(value: Any) -> bytes:
    return _dumps(value, option=OPT_SORT_KEYS)


def build_columns(steps: Iterable[dict[str, Any]], json_values: bool = False) -> StepColumns:
    builder = ColumnBuilder(json_values)
    for record in steps:
        builder.add(record)
    return builder.finish()


# -- the columns of a trace ----------------------------------------------------------------------------

_memo: dict[int, tuple[Any, StepColumns]] | None = None


@contextmanager
def shared_columns() -> Iterator[None]:
    """Within this block, columns built from a trace's in-memory records are built once per trace
    (run_checks: ten checks read the same two traces). Outside it they are rebuilt on every call, since
    a caller may edit its records between calls."""
    global _memo
    outer = _memo
    _memo = {} if outer is None else outer
    try:
        yield
    finally:
        _memo = outer


def step_columns(trace: Any) -> StepColumns:
    """The columns of `trace`: the ones loaded with it from its cache, else built from its records."""
    steps = trace.steps
    loaded = getattr(steps, "columns", None)
    if loaded is not None:
        return loaded
    if _memo is not None:
        held = _memo.get(id(trace))
        if held is not None and held[0] is steps:
            return held[1]
    columns = build_columns(steps)
    if _memo is not None:
        _memo[id(trace)] = (steps, columns)
    return columns


# -- comparing two traces' columns ---------------------------------------------------------------------

def regular_pair(baseline: Any, candidate: Any, *channels: str) -> tuple[StepColumns, StepColumns] | None:
    """Both traces' columns when every one of `channels` fits them on both sides; else None (the check
    then reads those channels from the records)."""
    ca, cb = step_columns(baseline), step_columns(candidate)
    return (ca, cb) if ca.regular(*channels) and cb.regular(*channels) else None


def scan(baseline: Any, candidate: Any, channels: tuple[str, ...], over_columns: Callable[[StepColumns, StepColumns], Any],
         over_records: Callable[[Any, Any], Any]) -> Any:
    """A check's scan of two traces: `over_columns(columns a, columns b)` where `channels` fit both, else
    `over_records(baseline, candidate)`, which walks the step records."""
    pair = regular_pair(baseline, candidate, *channels)
    return over_records(baseline, candidate) if pair is None else over_columns(*pair)


def joint_ids(table_a: list, table_b: list) -> tuple[np.ndarray, np.ndarray]:
    """Map two per-trace tables onto one id space where equal values (Python ==) share an id."""
    ids: dict[Any, int] = {}
    map_a = np.array([ids.setdefault(freeze(v), len(ids)) for v in table_a], dtype=np.int64)
    map_b = np.array([ids.setdefault(freeze(v), len(ids)) for v in table_b], dtype=np.int64)
    return map_a, map_b


def joint_column(ca: StepColumns, cb: StepColumns, table: str, column_a: np.ndarray,
                 column_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two id columns of `table` translated into one id space."""
    map_a, map_b = joint_ids(ca.tables[table], cb.tables[table])
    if np.array_equal(map_a, np.arange(len(map_a))) and np.array_equal(map_b, np.arange(len(map_b))):
        return column_a, column_b  # b's table starts like a's: the ids already agree
    return map_a[column_a] if len(map_a) else column_a, map_b[column_b] if len(map_b) else column_b


def counts(offsets: np.ndarray, n: int) -> np.ndarray:
    """Items per step of a flat list column, for the first n steps."""
    return np.diff(offsets[:n + 1])


def pair_items(off_a: np.ndarray, off_b: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of `steps`, the first min(count_a, count_b) items of each side paired as `zip` pairs them:
    (step of each pair, flat index into a, flat index into b)."""
    steps = np.asarray(steps, dtype=np.int64)
    start_a, start_b = off_a[steps], off_b[steps]
    m = np.minimum(off_a[steps + 1] - start_a, off_b[steps + 1] - start_b)
    total = int(m.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(m) - m, m)
    return np.repeat(steps, m), np.repeat(start_a, m) + within, np.repeat(start_b, m) + within


def lists_equal(off_a: np.ndarray, off_b: np.ndarray, n: int,
                agree: Callable[[Any, Any], np.ndarray]) -> np.ndarray:
    """Per step (first n): the two lists have as many items and `agree(items of a, items of b)` (flat
    indices, or one slice for both) holds for every pair of items."""
    if np.array_equal(off_a[:n + 1], off_b[:n + 1]):
        # Every step has as many items on both sides (the usual case): items pair by flat position.
        start, stop = int(off_a[0]), int(off_a[n])
        equal = np.ones(n, dtype=bool)
        bad = np.flatnonzero(~agree(slice(start, stop), slice(start, stop))) + start
        if len(bad):
            equal[np.searchsorted(off_a[:n + 1], bad, side="right") - 1] = False
        return equal
    equal = counts(off_a, n) == counts(off_b, n)
    steps, ia, ib = pair_items(off_a, off_b, np.flatnonzero(equal))
    equal[steps[~agree(ia, ib)]] = False
    return equal


def count_per_step(offsets: np.ndarray, flags: np.ndarray, n: int) -> np.ndarray:
    """Per step (first n): how many of the step's items have `flags` set."""
    total = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return total[offsets[1:n + 1]] - total[offsets[:n]]


def first_difference(both: np.ndarray, differ: np.ndarray) -> tuple[int | None, int]:
    """checks.base.first_mismatch over columns: the first step recorded on `both` sides where they
    `differ`, and how many steps recorded on both sides were compared up to it (all, when none differs)."""
    hits = np.flatnonzero(both & differ)
    if not len(hits):
        return None, int(np.count_nonzero(both))
    first = int(hits[0])
    return first, int(np.count_nonzero(both[:first + 1]))


def floats_equal(val_a: np.ndarray, kind_a: np.ndarray, val_b: np.ndarray, kind_b: np.ndarray) -> np.ndarray:
    """Recorded floats equal as the records compare them: same spelling, or both numbers and ==."""
    return (kind_a == kind_b) & ((kind_a != KIND_NUMBER) | (val_a == val_b))


def rel_diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """checks.base.rel_diff, element-wise (same IEEE operations, so the same floats)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        denom = np.maximum(np.abs(a), np.abs(b))
        rel = np.where(denom != 0, np.abs(a - b) / np.where(denom != 0, denom, 1.0), 0.0)
    special = ~np.isfinite(a) | ~np.isfinite(b)
    return np.where(a == b, 0.0, np.where(special, np.inf, rel))


def ordered_distance(bits_a: np.ndarray, bits_b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """|ordered(a) - ordered(b)| of IEEE bit patterns of `width` bits (records.ulp_distance), as uint64.
    Both patterns must fit in `width` bits (callers route other pairs through the records)."""
    one = np.uint64(1)
    shift = width.astype(np.uint64) - one
    sign = one << shift
    low = sign - one
    neg_a, neg_b = (bits_a & sign) != 0, (bits_b & sign) != 0
    mag_a, mag_b = bits_a & low, bits_b & low
    same = np.where(mag_a >= mag_b, mag_a - mag_b, mag_b - mag_a)
    return np.where(neg_a == neg_b, same, mag_a + mag_b)


def max_int(values: np.ndarray, default: int = 0) -> int:
    return int(values.max()) if len(values) else default


def first_index(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None
