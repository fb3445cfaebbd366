"""`params`: digests of every parameter the optimizer updates, after each step."""

from __future__ import annotations

from parity.checks.base import Finding, first_mismatch, not_compared
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.schema import F_PARAMS


def check_digest_channel(name: str, field: str, what: str, baseline: Trace, candidate: Trace) -> Finding:
    """Shared by params and optimizer_state: first step whose digest (step field `field`, a schema F_*
    constant) differs."""
    first, compared = first_mismatch(baseline, candidate, lambda s: s.get(field))
    if compared == 0:
        return not_compared(name, f"no {what} digests on both sides (capture level minimal?)")
    evidence = {"steps_compared": compared, "strength": "exact bits (sum64 digest per tensor)"}
    if first is None:
        return Finding(name, schema.IDENTICAL, f"{what} bit-identical after all {compared} compared steps", None, evidence)
    evidence["baseline_digest"] = baseline.steps[first][field]
    evidence["candidate_digest"] = candidate.steps[first][field]
    return Finding(name, schema.DIFFERENT, f"{what} differ after step {first}", first, evidence)


def check_params(baseline: Trace, candidate: Trace) -> Finding:
    return check_digest_channel("params", F_PARAMS, "parameters", baseline, candidate)
