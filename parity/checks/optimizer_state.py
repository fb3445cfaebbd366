"""`optimizer_state`: digests of the optimizer's per-parameter state (moments, step counters)."""

from __future__ import annotations

from parity.checks.base import Finding
from parity.checks.params import check_digest_channel
from parity.trace.reader import Trace
from parity.trace.schema import F_OPTIM_STATE


def check_optimizer_state(baseline: Trace, candidate: Trace) -> Finding:
    return check_digest_channel("optimizer_state", F_OPTIM_STATE, "optimizer state tensors", baseline, candidate)
