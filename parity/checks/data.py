"""`data`: digests of the batches the DataLoader produced and of the inputs of the model's forward."""

from __future__ import annotations

from parity.checks.base import Finding, first_mismatch, not_compared
from parity.trace import schema
from parity.trace.reader import Trace

#: (step field, what it holds) in the order they are looked at.
_CHANNELS = (("loader", "DataLoader batches"), ("batch", "model inputs"))


def _roots(entries: list[str]) -> list[str]:
    return [e.rpartition(":")[0] for e in entries]


def _same_roots(a: list[str], b: list[str]) -> bool:
    """Model inputs compare only when the same root modules ran: a trainer that calls model.forward()
    directly makes its submodules the roots, and their inputs are not the other side's batch."""
    return _roots(a) == _roots(b)


def check_data(baseline: Trace, candidate: Trace) -> Finding:
    """IDENTICAL when the loader produced bit-identical batches in the same order and the model's root
    forward saw bit-identical inputs (order-sensitive digests); each part is compared where both sides
    recorded it. Loader batches equal but model inputs different means augmentation or noise differs."""
    evidence: dict = {"strength": "exact bits (order-sensitive wsum64 digest)"}
    firsts = {}
    for field, what in _CHANNELS:
        first, compared = first_mismatch(baseline, candidate, lambda s, f=field: s.get(f) or None,
                                         comparable=_same_roots if field == "batch" else None)
        evidence[f"{field}_steps_compared"] = compared
        if compared and first is not None:
            firsts[field] = first
            evidence[field] = {"step": first, "baseline_digest": baseline.steps[first][field],
                               "candidate_digest": candidate.steps[first][field]}
    if not evidence["loader_steps_compared"] and not evidence["batch_steps_compared"]:
        return not_compared("data", "no batch digests on both sides (capture level minimal, no DataLoader and no "
                                    "forward of a trainable root module with grad enabled)")
    evidence["steps_compared"] = max(evidence["loader_steps_compared"], evidence["batch_steps_compared"])
    if not firsts:
        seen = " and ".join(what for field, what in _CHANNELS if evidence[f"{field}_steps_compared"])
        return Finding("data", schema.IDENTICAL, f"same {seen} in the same order for all {evidence['steps_compared']} "
                       "compared steps", None, evidence)
    first = min(firsts.values())
    if "loader" in firsts and firsts["loader"] == first:
        summary = f"the DataLoader's batches differ from step {first}"
    elif evidence["loader_steps_compared"]:
        summary = (f"the DataLoader's batches are identical, but the model's inputs differ from step {first} "
                   "(augmentation or noise applied in the loop differs)")
    else:
        summary = f"the model's inputs differ from step {first}"
    return Finding("data", schema.DIFFERENT, summary, first, evidence)
