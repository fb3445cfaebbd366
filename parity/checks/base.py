"""The Finding every check returns, tolerances, and helpers for walking two traces step by step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from parity.exceptions import ConfigError
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import float64_ulps, ulp_distance  # noqa: F401  (re-exported for the checks)


@dataclass
class Finding:
    """Result of one check: a status, the first step where the channel differs, and the evidence."""

    name: str
    status: str
    summary: str
    first_divergent_step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    affects_training: bool = True
    """False for explanatory checks (config, loop order) whose differences alone change no update."""

    def __post_init__(self) -> None:
        if self.status not in schema.STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Tolerance:
    """How far two floats may be apart and still count as EQUIVALENT (never IDENTICAL)."""

    rel: float = 0.0
    """Relative difference |a-b|/max(|a|,|b|)."""
    ulps: int = 0
    """Distance in units in the last place of the recorded dtype."""

    def __post_init__(self) -> None:
        # NaN compares false both ways and inf admits every difference: both would pass silently.
        if not math.isfinite(self.rel) or self.rel < 0 or self.ulps < 0:
            raise ConfigError(f"--tolerance: rel ({self.rel}) and ulps ({self.ulps}) must be finite and >= 0 "
                              "(e.g. --tolerance loss:1e-6 or loss:4ulp)")

    @property
    def exact(self) -> bool:
        return self.rel == 0 and self.ulps == 0

    def allows(self, rel: float, ulps: int | None) -> bool:
        if self.exact:
            return False
        return (self.rel > 0 and rel <= self.rel) or (self.ulps > 0 and ulps is not None and ulps <= self.ulps)

    def __str__(self) -> str:
        parts = [f"rel<={self.rel:g}"] if self.rel else []
        parts += [f"<={self.ulps} ulp"] if self.ulps else []
        return " or ".join(parts) or "exact bits"


def aligned(baseline: Trace, candidate: Trace) -> Iterator[tuple[int, dict, dict]]:
    """Pairs of step records with the same index, up to the shorter trace."""
    for i, (a, b) in enumerate(zip(baseline.steps, candidate.steps)):
        yield i, a, b


def first_mismatch(baseline: Trace, candidate: Trace, key: Callable[[dict], Any],
                   comparable: Callable[[Any, Any], bool] | None = None) -> tuple[int | None, int]:
    """First step whose `key` differs, and the number of steps compared. None values (not captured) and
    pairs that `comparable` rejects are skipped."""
    n = min(len(baseline.steps), len(candidate.steps))
    values_a = [key(s) for s in baseline.steps[:n]]
    values_b = [key(s) for s in candidate.steps[:n]]
    if values_a == values_b and None not in values_a:  # the common case, decided by one C-level comparison
        return None, n
    compared = 0
    for i, va, vb in zip(range(n), values_a, values_b):
        if va is None or vb is None or (comparable is not None and not comparable(va, vb)):
            continue
        compared += 1
        if va != vb:
            return i, compared
    return None, compared


def as_float(value: Any) -> float:
    """A recorded value as a float; the trace's "nan"/"inf"/"-inf" strings parse as themselves."""
    return float(value)


def rel_diff(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return math.inf
    denom = max(abs(a), abs(b))
    return abs(a - b) / denom if denom else 0.0



def not_compared(name: str, reason: str) -> Finding:
    return Finding(name, schema.NOT_COMPARED, reason, evidence={"reason": reason}, affects_training=False)
