"""The audit's vocabulary: category and status names, and the result dataclasses every step returns.

Every other module of `parity.audit` builds or transforms these; none of them prints or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from parity.exceptions import CheckpointError

FORMAT_VERSION = 1
"""Version of `audit_to_json`'s output. Changelog: 1 -- first version."""

SAVED = "saved"
NOT_SAVED = "not_saved"
NOT_APPLICABLE = "not_applicable"
STATUSES = (SAVED, NOT_SAVED, NOT_APPLICABLE)

#: Every category an audit reports, in the order reports list them.
CATEGORIES = (
    "model",
    "optimizer",
    "scheduler",
    "grad_scaler",
    "rng_python",
    "rng_numpy",
    "rng_torch",
    "rng_cuda",
    "counters",
    "data_position",
    "early_stopping",
    "config",
)

#: The RNG categories, keyed by the generator name a parity trace uses in a step's "rng" digests.
RNG_CATEGORIES = {"python": "rng_python", "numpy": "rng_numpy", "torch": "rng_torch", "cuda": "rng_cuda"}

#: States a resume check's negative controls can drop, mapped to the category each one measures.
CONTROL_STATES = {
    "optimizer": "optimizer",
    "scheduler": "scheduler",
    "grad_scaler": "grad_scaler",
    "rng_torch": "rng_torch",
    "rng_cuda": "rng_cuda",
    "rng_numpy": "rng_numpy",
    "rng_python": "rng_python",
}


@dataclass(frozen=True)
class CategoryResult:
    """What one checkpoint says about one category of training state.

    `status` comes from the checkpoint alone until `compare_with_trace` fills `used`; only then can a
    category be "not_applicable". `details` holds machine-readable facts behind `evidence` (key paths,
    counts), never tensors.
    """

    category: str
    status: str
    evidence: str
    details: dict[str, Any] = field(default_factory=dict)
    used: bool | None = None
    """Whether the run that wrote the checkpoint used this state; None when no trace says."""
    impact: str | None = None
    """Measured effect of dropping this state on a resumed run, from a resume check's controls."""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise CheckpointError(f"unknown audit category {self.category!r} (expected one of {', '.join(CATEGORIES)})")
        if self.status not in STATUSES:
            raise CheckpointError(f"{self.category}: unknown audit status {self.status!r} (expected one of {', '.join(STATUSES)})")


@dataclass(frozen=True)
class Audit:
    """One checkpoint's audit: exactly one result per category, in `CATEGORIES` order.

    Transformations (`compare_with_trace`, `attach_impact`) return a new Audit and never modify this one.
    """

    checkpoint: str
    categories: list[CategoryResult]
    notes: list[str] = field(default_factory=list)
    """Facts about the checkpoint that belong to no category: files skipped, objects not inspected."""
    trace: str | None = None
    """Path of the trace that decided `used`, once `compare_with_trace` ran."""

    def __post_init__(self) -> None:
        names = [c.category for c in self.categories]
        if names != list(CATEGORIES):
            raise CheckpointError(f"{self.checkpoint}: an audit needs one result per category in order "
                                  f"{list(CATEGORIES)}, got {names}")

    def get(self, category: str) -> CategoryResult:
        """The result for one category; CheckpointError for a name that is not a category."""
        for result in self.categories:
            if result.category == category:
                return result
        raise CheckpointError(f"unknown audit category {category!r} (expected one of {', '.join(CATEGORIES)})")

    def status_of(self, category: str) -> str:
        return self.get(category).status

    def with_results(self, updates: dict[str, CategoryResult], **changes: Any) -> Audit:
        """A copy with some categories replaced (and other Audit fields changed)."""
        categories = [updates.get(c.category, c) for c in self.categories]
        return replace(self, categories=categories, **changes)


def by_status(audit: Audit) -> dict[str, list[CategoryResult]]:
    """Categories grouped by status, each group in `CATEGORIES` order."""
    groups: dict[str, list[CategoryResult]] = {status: [] for status in STATUSES}
    for result in audit.categories:
        groups[result.status].append(result)
    return groups
