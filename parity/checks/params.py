"""`params`: digests of every parameter the optimizer updates, after each step."""

from __future__ import annotations

from parity.checks.base import Finding, first_mismatch, not_compared
from parity.trace import schema
from parity.trace.columns import OPTIM_STATE, PARAMS, PRESENT, first_difference, regular_pair
from parity.trace.reader import Trace
from parity.trace.schema import F_OPTIM_STATE, F_PARAMS

#: Step field -> its channel in the columns.
_CHANNELS = {F_PARAMS: PARAMS, F_OPTIM_STATE: OPTIM_STATE}


def _first_digest_mismatch(baseline: Trace, candidate: Trace, field: str) -> tuple[int | None, int]:
    channel = _CHANNELS.get(field)
    pair = regular_pair(baseline, candidate, channel) if channel else None
    if pair is None:
        return first_mismatch(baseline, candidate, lambda s: s.get(field))
    ca, cb = pair
    n = min(ca.n, cb.n)
    bits_a, bits_b = ca.arrays[channel + "_bits"][:n], cb.arrays[channel + "_bits"][:n]
    len_a, len_b = ca.arrays[channel + "_len"][:n], cb.arrays[channel + "_len"][:n]
    both = (ca.arrays[channel + "_state"][:n] == PRESENT) & (cb.arrays[channel + "_state"][:n] == PRESENT)
    return first_difference(both, (bits_a != bits_b) | (len_a != len_b))


def check_digest_channel(name: str, field: str, what: str, baseline: Trace, candidate: Trace) -> Finding:
    """Shared by params and optimizer_state: first step whose digest (step field `field`, a schema F_*
    constant) differs."""
    first, compared = _first_digest_mismatch(baseline, candidate, field)
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
