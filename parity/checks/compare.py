"""Run every check on two traces, apply the noise floor, and aggregate the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from parity.checks.bands import Bands, apply_bands
from parity.checks.base import Finding, Tolerance
from parity.checks.causes import Cause, rank_causes
from parity.checks.code import CodeChanges, code_changes
from parity.checks.config import check_config
from parity.checks.data import check_data
from parity.checks.divergence import locate_first_divergence
from parity.checks.grad_norm import check_grad_norm
from parity.checks.loss import check_loss
from parity.checks.lr_schedule import check_lr_schedule
from parity.checks.model import check_model
from parity.checks.optimizer_state import check_optimizer_state
from parity.checks.params import check_params
from parity.checks.step_order import check_step_order
from parity.checks.train_mode import check_train_mode
from parity.trace import schema
from parity.exceptions import ConfigError, TraceError
from parity.trace.columns import shared_columns
from parity.trace.reader import Trace
from parity.trace.records import TraceMeta

#: Check names in report order; the JSON "checks" list follows it.
CHECK_NAMES = ("config", "step_order", "model", "data", "train_mode", "loss", "grad_norm", "lr_schedule", "params",
               "optimizer_state")

#: Checks that accept a Tolerance (keys of the `tolerances` mapping); the others compare exact bits or
#: structure, where "close" has no meaning.
TOLERANT_CHECKS = ("loss", "grad_norm", "lr_schedule")

#: A candidate difference counts as noise when it stays within this multiple of the baseline's own spread.
NOISE_MARGIN = 2.0


@dataclass
class Comparison:
    """All findings for one baseline/candidate pair, with the verdict and the first divergence."""

    verdict: str
    findings: list[Finding]
    first_divergence: dict[str, Any] | None
    noise: dict[str, Any] | None = None
    sides: dict[str, Any] = field(default_factory=dict)
    causes: list[Cause] = field(default_factory=list)
    """What changed, ranked by how directly it changes training; causes[0] is the root cause."""
    code: CodeChanges = field(default_factory=lambda: CodeChanges(recorded=False))

    def finding(self, name: str) -> Finding:
        return next(f for f in self.findings if f.name == name)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict,
                "checks": [{"name": f.name, "status": f.status, "first_divergent_step": f.first_divergent_step,
                            "summary": f.summary, "affects_training": f.affects_training, "evidence": f.evidence}
                           for f in self.findings],
                "first_divergence": self.first_divergence, "noise_floor": self.noise, "sides": self.sides,
                "causes": [c.to_json() for c in self.causes], "code": self.code.to_json()}


#: Checks that measure what the optimizer saw or did; they decide the verdict.
TRAINING_CHECKS = frozenset({"model", "data", "train_mode", "loss", "grad_norm", "lr_schedule", "params",
                             "optimizer_state"})
#: Channels measured numerically: a mode difference counts only when one of them moved.
_NUMERIC_CHECKS = ("data", "loss", "grad_norm", "lr_schedule", "params", "optimizer_state")


def _verdict(findings: list[Finding]) -> str:
    statuses = [f.status for f in findings if f.name in TRAINING_CHECKS or f.affects_training]
    for status in (schema.DIFFERENT, schema.EQUIVALENT):
        if status in statuses:
            return status
    numeric = [f.status for f in findings if f.name in _NUMERIC_CHECKS]
    # Structure alone (same model, nothing measured) is not evidence that training is the same.
    if numeric and all(s == schema.NOT_COMPARED for s in numeric):
        return schema.NOT_COMPARED
    return schema.IDENTICAL


def check_tolerances(tolerance: Tolerance = Tolerance(),
                     tolerances: Mapping[str, Tolerance] | None = None) -> dict[str, Tolerance]:
    """One Tolerance per check of TOLERANT_CHECKS: `tolerance` for loss, overridden by `tolerances`
    entries; exact bits for the rest. Raises ConfigError naming an unknown check or a value that is not
    a Tolerance."""
    out = {name: Tolerance() for name in TOLERANT_CHECKS}
    out["loss"] = tolerance
    for name, value in (tolerances or {}).items():
        if name not in TOLERANT_CHECKS:
            raise ConfigError(f"tolerance for {name!r}: only {', '.join(TOLERANT_CHECKS)} accept a tolerance "
                              "(the other checks compare exact bits or structure)")
        if not isinstance(value, Tolerance):
            raise ConfigError(f"tolerance for {name!r}: expected a Tolerance, got {type(value).__name__}")
        out[name] = value
    return out


def run_checks(baseline: Trace, candidate: Trace, tolerance: Tolerance = Tolerance(),
               ignore_args: frozenset[str] = frozenset(),
               tolerances: Mapping[str, Tolerance] | None = None) -> list[Finding]:
    """Every check of CHECK_NAMES in order; tolerances as compare_traces takes them."""
    limits = check_tolerances(tolerance, tolerances)
    da, db = baseline.header.get("digest"), candidate.header.get("digest")
    if da != db:
        raise TraceError(f"{candidate.path}: recorded with digest algorithm {db!r}, but {baseline.path} with {da!r}; "
                         "digests are only comparable within one algorithm: re-record one side with this parity")
    with shared_columns():  # every check scans the same two traces' columns: build them once
        findings = _findings(baseline, candidate, ignore_args, limits)
    _weigh_train_mode(findings)
    return findings


def _findings(baseline: Trace, candidate: Trace, ignore_args: frozenset[str], limits: dict[str, Tolerance]) -> list[Finding]:
    return [
        check_config(baseline, candidate, ignore_args),
        check_step_order(baseline, candidate),
        check_model(baseline, candidate),
        check_data(baseline, candidate),
        check_train_mode(baseline, candidate),
        check_loss(baseline, candidate, limits["loss"]),
        check_grad_norm(baseline, candidate, limits["grad_norm"]),
        check_lr_schedule(baseline, candidate, limits["lr_schedule"]),
        check_params(baseline, candidate),
        check_optimizer_state(baseline, candidate),
    ]


def _weigh_train_mode(findings: list[Finding]) -> None:
    """A module left in eval mode changes training only through dropout/batch-norm; when every numeric
    channel is bit-identical (a model without either), the mode difference is shown but did not matter."""
    by_name = {f.name: f for f in findings}
    mode = by_name["train_mode"]
    if mode.status == schema.DIFFERENT and not any(by_name[n].status == schema.DIFFERENT for n in _NUMERIC_CHECKS):
        mode.status = schema.EQUIVALENT
        mode.affects_training = False
        mode.summary += "; every measured channel is identical, so it did not change training here"
    order = by_name["step_order"]
    if mode.status == schema.DIFFERENT and order.status == schema.EQUIVALENT:
        # The mode switch the loop order calls inert was not undone before the training forward.
        order.status = schema.DIFFERENT
        order.summary = (f"the mode switches in the loop differ, and the model was NOT back in training mode at the "
                         f"training forward (see training mode, step {mode.first_divergent_step})")


def _apply_noise_floor(findings: list[Finding], floor: list[Finding], baseline: Trace) -> dict[str, Any]:
    """Reclassify candidate differences that the baseline also shows against itself."""
    self_by_name = {f.name: f for f in floor}
    noise_rel = self_by_name["loss"].evidence.get("max_rel", 0.0)
    ops = TraceMeta.of(baseline).nondeterministic_ops
    info = {"deterministic": _verdict(floor) == schema.IDENTICAL, "loss_max_rel": noise_rel,
            "margin": NOISE_MARGIN, "nondeterministic_ops": ops,
            "channels": {f.name: f.first_divergent_step for f in floor if f.status == schema.DIFFERENT}}
    if info["deterministic"]:
        return info
    by_name = {f.name: f for f in findings}
    loss = by_name["loss"]
    cand_rel = loss.evidence.get("max_rel", 0.0)
    within = loss.status != schema.DIFFERENT or cand_rel <= NOISE_MARGIN * noise_rel
    for f in findings:
        own = self_by_name.get(f.name)
        if f.status == schema.DIFFERENT and f.affects_training and own is not None and own.status == schema.DIFFERENT \
                and f.name != "step_order" and within:
            f.status = schema.EQUIVALENT
            f.evidence["noise_floor"] = {"baseline_self_first_step": own.first_divergent_step,
                                         "baseline_self_loss_max_rel": noise_rel, "candidate_loss_max_rel": cand_rel}
            f.summary = (f"{f.summary} -- within the baseline's own noise floor (the baseline differs from itself "
                         f"from step {own.first_divergent_step}; loss rel {cand_rel:.3g} <= {NOISE_MARGIN:g} x {noise_rel:.3g})")
    return info


def compare_traces(baseline: Trace, candidate: Trace, *, tolerance: Tolerance = Tolerance(),
                   baseline_repeat: Trace | None = None, ignore_args: frozenset[str] = frozenset(),
                   tolerances: Mapping[str, Tolerance] | None = None, bands: Bands | None = None) -> Comparison:
    """Compare two traces; with `baseline_repeat`, judge differences against the baseline's noise floor.

    Tolerances, per check: `tolerances` maps a check name of TOLERANT_CHECKS ("loss", "grad_norm",
    "lr_schedule") to a Tolerance, e.g. ``{"loss": Tolerance(ulps=4), "grad_norm": Tolerance(rel=1e-5)}``
    (a pair file's `[tolerance]` table maps onto it). `tolerance` is the loss tolerance, kept for callers
    that predate the mapping; a "loss" entry in `tolerances` overrides it. A check without an entry
    compares exact bits. Within its tolerance a check says EQUIVALENT and its evidence states the
    tolerance and the largest difference observed; an unknown check name raises ConfigError. The noise
    floor (`baseline_repeat` against the baseline) is always measured exactly.

    `bands` (from `parity calibrate`: the baseline recorded K times) makes a difference EQUIVALENT where
    it stays inside the band the baseline shows against itself; `Comparison.noise["bands"]` says how.
    """
    findings = run_checks(baseline, candidate, tolerance, ignore_args, tolerances)
    noise = None
    if baseline_repeat is not None:
        noise = _apply_noise_floor(findings, run_checks(baseline, baseline_repeat, ignore_args=ignore_args), baseline)
    if bands is not None:
        noise = {**(noise or {}), "bands": apply_bands(findings, candidate, bands)}
    divergence = locate_first_divergence(findings)
    code = code_changes(baseline, candidate)
    verdict = _verdict(findings)
    causes = rank_causes({f.name: f for f in findings}, verdict, divergence, code)
    sides = {name: {"path": str(t.path), "steps": len(t.steps), "ended": t.ended_how,
                    "git": TraceMeta.of(t).run.get(schema.RUN_GIT), "argv": TraceMeta.of(t).argv}
             for name, t in (("baseline", baseline), ("candidate", candidate))}
    return Comparison(verdict, findings, divergence, noise, sides, causes, code)
