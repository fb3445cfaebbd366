"""The feature matrix: rows of (section, feature, A, B, status, evidence) and how a row's status is decided."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Row statuses. `not checked` is neither a match nor a difference: nothing was recorded or run to judge by.
IDENTICAL, DIFFERENT, ONLY_A, ONLY_B, NOT_CHECKED = "identical", "different", "only in A", "only in B", "not checked"
STATUSES = (IDENTICAL, DIFFERENT, ONLY_A, ONLY_B, NOT_CHECKED)

# Sections, in the seed document's order plus the two it never had.
CORE, VIZ, EXPORT, CONFIG, DATA, NUMERICS, CHECKLIST = ("Core Training", "Visualization", "Export & Persistence",
                                                        "Configuration", "Dataset Handling", "Numerics", "Checklist")
SECTIONS = (CORE, VIZ, EXPORT, CONFIG, DATA, NUMERICS, CHECKLIST)
#: What a cell says where the side has no such feature.
ABSENT = "absent"
#: What a cell says where the trace does not hold the fact at all.
NOT_RECORDED = "not recorded"


@dataclass
class Row:
    """One feature of both runs: what each side showed, whether they agree, and where that was read."""

    section: str
    feature: str
    a: str
    b: str
    status: str
    evidence: str

    def __post_init__(self) -> None:
        if self.section not in SECTIONS or self.status not in STATUSES:
            raise ValueError(f"row {self.feature!r}: section {self.section!r} / status {self.status!r} unknown")


def presence_status(a: Any, b: Any, same: bool | None = None) -> str:
    """Status of a feature each side has (a value) or lacks (None); `same` overrides equality of values."""
    if a is None and b is None:
        return NOT_CHECKED
    if b is None:
        return ONLY_A
    if a is None:
        return ONLY_B
    return IDENTICAL if (a == b if same is None else same) else DIFFERENT


def value_row(section: str, feature: str, a: Any, b: Any, evidence: str, *, shown_a: str | None = None,
              shown_b: str | None = None, same: bool | None = None, missing: str = ABSENT) -> Row:
    """A row comparing two values (None: the side lacks the feature); `shown_*` is how a cell prints."""
    status = presence_status(a, b, same)
    if status == NOT_CHECKED:
        missing = NOT_RECORDED if missing == ABSENT else missing
    cell_a = shown_a if shown_a is not None else (missing if a is None else _cell(a))
    cell_b = shown_b if shown_b is not None else (missing if b is None else _cell(b))
    return Row(section, feature, cell_a, cell_b, status, evidence)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class FeatureMatrix:
    """Everything `parity features` measured about two runs; rendered by parity.features.render."""

    labels: tuple[str, str]
    """How the two sides are named in the table (A, B)."""
    runs: tuple[str, str]
    """Their run directories."""
    rows: list[Row]
    numerics: dict[str, Any] = field(default_factory=dict)
    """The comparison's verdict, first divergence and the evidence of its data and loss checks."""
    throughput: Any = None
    """The JSON a throughput benchmark wrote (`--throughput FILE`), shown as it is."""
    reproduce: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[Row]:
        return [r for r in self.rows if r.status in (DIFFERENT, ONLY_A, ONLY_B)]

    @property
    def identical(self) -> bool:
        return not self.differences

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def to_json(self) -> dict[str, Any]:
        return {"status": "identical" if self.identical else "different", "labels": list(self.labels),
                "runs": list(self.runs), "counts": self.counts(), "rows": [asdict(r) for r in self.rows],
                "numerics": self.numerics, "throughput": self.throughput, "notes": self.notes,
                "reproduce": self.reproduce}
