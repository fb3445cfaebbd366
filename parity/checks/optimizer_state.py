"""`optimizer_state`: digests of the optimizer's per-parameter state (moments, step counters)."""

from __future__ import annotations

from parity.checks.base import Finding
from parity.checks.params import check_digest_channel
from parity.trace.reader import Trace


def check_optimizer_state(baseline: Trace, candidate: Trace) -> Finding:
    return check_digest_channel("optimizer_state", "optim_state", "optimizer state tensors", baseline, candidate)
