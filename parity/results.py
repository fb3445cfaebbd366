"""What each facade call returns: result dataclasses that renderers import, and nothing that runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.checks.base import Finding
from parity.checks.compare import Comparison
from parity.checks.ranks import combined_status
from parity.pairs import Pair, ResumeProtocol, Toggle
from parity.resume.analysis import SegmentResult
from parity.trace.reader import Trace

__all__ = ["AblationResult", "AttributedSetting", "AttributionResult", "CalibrationResult", "Comparison", "GateFailure", "GateResult", "GoldenResult", "PairRuns",
           "RanksResult", "ReportResult", "ResumeResult", "SegmentResult", "ToggleResult"]


@dataclass
class PairRuns:
    """Run directories produced for a pair (or given directly)."""

    baseline: Path
    candidate: Path
    baseline_repeat: Path | None = None
    commands: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateFailure:
    """One check whose status is not what the pair file expects."""

    check: str
    expected: str
    actual: str
    step: int | None
    summary: str
    reason: str


@dataclass
class GateResult:
    """A gate: the comparison it judged and every failed expectation (all of them, not the first)."""

    pair: Pair
    comparison: Comparison
    failures: list[GateFailure]
    runs: PairRuns | None = None
    golden: "GoldenResult | None" = None
    """Set when the gate compared against a stored golden (or had to create one)."""
    golden_note: str | None = None
    """Set when a golden was wanted where available (`golden="auto"`) but the baseline was recorded: why."""

    @property
    def passed(self) -> bool:
        return not self.failures

    def failure(self, check: str) -> GateFailure | None:
        return next((f for f in self.failures if f.check == check), None)

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair.name, "passed": self.passed, "failures": [f.__dict__ for f in self.failures],
                "comparison": self.comparison.to_json(), "golden": self.golden.to_json() if self.golden else None, "golden_note": self.golden_note}


@dataclass
class GoldenResult:
    """A golden of one pair and environment: where it is, whether this call created or rewrote it, how its
    provenance compares with the run at hand, and (on an update) what changed, per channel."""

    pair: str
    environment: str
    path: Path
    created: bool = False
    updated: bool = False
    provenance_mismatches: list[str] = field(default_factory=list)
    change_summary: str | None = None
    """Markdown for a pull request: what the rewrite changed per channel (None unless updated)."""
    banded: bool = False
    """True when differences were judged against calibrated bands (provenance differs, bands stored)."""

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair, "environment": self.environment, "path": str(self.path), "created": self.created,
                "updated": self.updated, "provenance_mismatches": self.provenance_mismatches,
                "change_summary": self.change_summary, "banded": self.banded}


@dataclass
class CalibrationResult:
    """K recordings of a pair's baseline and the per-step bands they span, stored beside the golden."""

    pair: str
    environment: str
    repeats: int
    deterministic: bool
    widths: dict[str, float]
    digests_stable: dict[str, bool]
    path: Path
    runs: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair, "environment": self.environment, "repeats": self.repeats,
                "deterministic": self.deterministic, "widths": self.widths, "digests_stable": self.digests_stable,
                "path": str(self.path), "runs": [str(r) for r in self.runs]}


@dataclass
class ReportResult:
    """A comparison with what a report shows beside it: the traces, the pair, the reproduce commands.

    `failures` is None without a pair (nothing is expected); with one it is the gate's list."""

    comparison: Comparison
    baseline: Trace
    candidate: Trace
    runs: PairRuns
    commands: list[str]
    """Every line of the Reproduce block."""
    pair: Pair | None = None
    failures: list[GateFailure] | None = None
    explanations: list[dict[str, Any]] = field(default_factory=list)
    """Results of `parity locate|bisect|attribute` as their JSON (`kind` says which): the Explanation section."""

    @property
    def labels(self) -> tuple[str, str]:
        if self.pair is None or self.pair.baseline is None or self.pair.candidate is None:
            return "baseline", "candidate"
        return self.pair.baseline.name, self.pair.candidate.name

    @property
    def expectations(self) -> dict[str, tuple[str, str]]:
        return {e.check: (e.status, e.reason) for e in self.pair.expectations} if self.pair else {}


@dataclass
class ResumeResult:
    """Everything a resume check measured."""

    protocol: ResumeProtocol
    continuous_steps: int
    splits: list[SegmentResult]
    double: list[SegmentResult] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return all(s.exact for s in self.splits + self.double)

    @property
    def ignored_resume(self) -> bool:
        return any(s.started_from_scratch for s in self.splits + self.double)

    def to_json(self) -> dict[str, Any]:
        fired = [c for c in self.controls if c["fired"]]
        return {"pair": self.protocol.name, "exact": self.exact, "ignored_resume": self.ignored_resume,
                "unit": self.protocol.unit, "total": self.protocol.total, "continuous_steps": self.continuous_steps,
                "splits": [s.to_json() for s in self.splits], "double": [s.to_json() for s in self.double],
                "controls": self.controls,
                "controls_fired": None if not self.controls else len(fired),
                "runs": self.runs}


@dataclass
class ToggleResult:
    """One toggle of an ablation: applied alone to the baseline, reverted alone on the candidate."""

    toggle: Toggle
    applied: Comparison
    reverted: Comparison
    applied_effect: float | None
    reverted_effect: float | None
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    stability: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def side(c: Comparison, effect: float | None) -> dict[str, Any]:
            fd = c.first_divergence or {}
            return {"status": c.verdict, "first_divergent_step": fd.get("step"), "channel": fd.get("channel"),
                    "final_loss_rel_change": effect}
        return {"name": self.toggle.name, "baseline_args": list(self.toggle.baseline),
                "candidate_args": list(self.toggle.candidate),
                "applied_to_baseline": side(self.applied, self.applied_effect),
                "reverted_on_candidate": side(self.reverted, self.reverted_effect), "metrics": self.metrics,
                "stability_applied": self.stability}


@dataclass
class AblationResult:
    """Every toggle's two comparisons, the baseline's noise floor on final loss, and instability signals."""

    pair: Pair
    baseline: Comparison
    noise_floor: float | None
    toggles: list[ToggleResult]
    finals: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]]
    stability: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"pair": self.pair.name, "baseline_vs_candidate": self.baseline.verdict,
                "first_divergence": self.baseline.first_divergence, "noise_floor_final_loss_rel": self.noise_floor,
                "final_loss": self.finals, "metrics": self.metrics, "stability": self.stability,
                "toggles": [t.to_json() for t in self.toggles]}


@dataclass
class RanksResult:
    """Two runs compared on every rank (`comparisons`, one world size) or across layouts (`sharded`, a
    sharded run against an unsharded one), with each run's replica consistency (`consistency`, keyed
    "baseline" and "candidate"). The verdict is the worst of them; NOT_COMPARED counts only when alone."""

    comparisons: dict[int, Comparison]
    consistency: dict[str, Finding]
    sharded: Finding | None = None

    @property
    def verdict(self) -> str:
        statuses = {**{f"rank {r}": c.verdict for r, c in self.comparisons.items()},
                    **{f"{side} consistency": f.status for side, f in self.consistency.items()}}
        if self.sharded is not None:
            statuses["sharded"] = self.sharded.status
        return combined_status(statuses)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict,
                "ranks": [{"rank": r, "verdict": c.verdict, "first_divergence": c.first_divergence,
                           "steps": {side: info.get("steps") for side, info in c.sides.items()}}
                          for r, c in sorted(self.comparisons.items())],
                "consistency": {side: f.to_json() for side, f in self.consistency.items()},
                "sharded": self.sharded.to_json() if self.sharded is not None else None}


#: How reverting one setting on the candidate came out (AttributedSetting.verdict).
CHANGES_TRAINING, INERT, WITHIN_NOISE = "changes training", "inert", "within noise"
NOT_REVERTED, NOT_TAKEN, RUN_FAILED = "not reverted", "not taken", "run failed"


@dataclass
class AttributedSetting:
    """One setting that differs between the runs, and what setting it back alone on the candidate did."""

    name: str
    """The argparse dest (or config-object key) that differs."""
    baseline: Any
    candidate: Any
    """Recorded values; "(absent)" where a side has no such setting."""
    source: str
    """Where it was recorded: "argparse" or "config object NAME"."""
    verdict: str
    """CHANGES_TRAINING, INERT, WITHIN_NOISE, or why nothing was measured: NOT_REVERTED, NOT_TAKEN, RUN_FAILED."""
    note: str = ""
    """The reason when not measured; what the revert run showed otherwise."""
    target: Any = None
    """The value it was set back to (the baseline's, or its off value where only the candidate has it)."""
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    """Tokens taken off the candidate's command line and put on it to set the value back."""
    reverted: Comparison | None = None
    """The candidate with this setting set back, against the candidate (its repeat is the noise floor)."""
    vs_baseline: Comparison | None = None
    """The same run against the baseline: IDENTICAL when this setting alone explains the whole divergence."""
    effect: float | None = None
    """Relative change of final loss the candidate owes to this setting (candidate vs reverted run)."""

    @property
    def explains_all(self) -> bool:
        return self.vs_baseline is not None and self.vs_baseline.verdict in ("IDENTICAL", "EQUIVALENT")

    def to_json(self) -> dict[str, Any]:
        def brief(c: Comparison | None) -> dict[str, Any] | None:
            return None if c is None else {"status": c.verdict, "first_divergence": c.first_divergence}
        return {"name": self.name, "baseline": self.baseline, "candidate": self.candidate, "source": self.source,
                "verdict": self.verdict, "note": self.note, "target": self.target, "removed_args": list(self.removed),
                "revert_args": list(self.added), "vs_candidate": brief(self.reverted),
                "vs_baseline": brief(self.vs_baseline), "explains_all": self.explains_all,
                "final_loss_rel_change": self.effect}


@dataclass
class AttributionResult:
    """`parity attribute`: every differing setting set back alone on the candidate, then all together.

    `settings` are ranked: those that change training first, by effect on final loss. `rest` compares the
    candidate with every revertible setting set back against the baseline (None when none could be)."""

    name: str
    comparison: Comparison
    """Baseline against candidate, as recorded."""
    settings: list[AttributedSetting]
    noise_floor: float | None
    """The candidate's own run-to-run spread of final loss (two recordings), relative."""
    rest: Comparison | None
    rest_settings: list[dict[str, Any]]
    """Settings still different with every argument set back: not on the command line."""
    conclusion: str
    reproduce: str
    """The `parity attribute ...` command that measures it again, from the project root."""
    finals: dict[str, float | None] = field(default_factory=dict)

    @property
    def responsible(self) -> list[AttributedSetting]:
        return [s for s in self.settings if s.verdict == CHANGES_TRAINING]

    def to_json(self) -> dict[str, Any]:
        rest = None if self.rest is None else {"status": self.rest.verdict, "first_divergence": self.rest.first_divergence,
                                               "code": self.rest.code.to_json()}
        return {"kind": "attribute", "name": self.name, "baseline_vs_candidate": self.comparison.verdict,
                "first_divergence": self.comparison.first_divergence, "noise_floor_final_loss_rel": self.noise_floor,
                "settings": [s.to_json() for s in self.settings],
                "responsible": [s.name for s in self.responsible], "rest": rest,
                "rest_settings": self.rest_settings, "conclusion": self.conclusion, "final_loss": self.finals,
                "reproduce": self.reproduce}
