"""`data`: digests of the batches that entered the root module's forward, per step."""

from __future__ import annotations

from parity.checks.base import Finding, first_mismatch, not_compared
from parity.trace import schema
from parity.trace.reader import Trace


def check_data(baseline: Trace, candidate: Trace) -> Finding:
    """IDENTICAL when every step saw bit-identical batches in the same order (order-sensitive digest)."""
    first, compared = first_mismatch(baseline, candidate, lambda s: s.get("batch") or None)
    if compared == 0:
        return not_compared("data", "no batch digests on both sides (capture level minimal, or no forward with grad)")
    evidence = {"steps_compared": compared, "strength": "exact bits (order-sensitive wsum64 digest)"}
    if first is None:
        return Finding("data", schema.IDENTICAL, f"same batches in the same order for all {compared} compared steps", None, evidence)
    evidence["baseline_digest"] = baseline.steps[first]["batch"]
    evidence["candidate_digest"] = candidate.steps[first]["batch"]
    return Finding("data", schema.DIFFERENT, f"batches differ from step {first}", first, evidence)
