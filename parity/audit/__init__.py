"""Checkpoint audit: what a checkpoint saves, what the run that wrote it used, and what is missing for exact resume.

    loaded = load_checkpoint(path)                  # refuses unsafe pickles unless trust=True
    audit = classify(loaded)                        # saved / not_saved per category
    audit = compare_with_trace(audit, trace)        # used-but-unsaved vs not applicable
    audit = attach_impact(audit, controls)          # measured effect from a resume check
    render_audit_markdown(audit), audit_to_json(audit), diff_checkpoints(a, b)

Pure functions over dataclasses: nothing here prints or writes files.
"""

from __future__ import annotations

from parity.audit.classify import classify
from parity.audit.diff import diff_checkpoints
from parity.audit.load import LoadedCheckpoint, load_checkpoint
from parity.audit.render import audit_to_json, render_audit_markdown
from parity.audit.result import CATEGORIES, NOT_APPLICABLE, NOT_SAVED, SAVED, STATUSES, Audit, CategoryResult
from parity.audit.usage import attach_impact, compare_with_trace

__all__ = [
    "CATEGORIES", "NOT_APPLICABLE", "NOT_SAVED", "SAVED", "STATUSES",
    "Audit", "CategoryResult", "LoadedCheckpoint",
    "load_checkpoint", "classify", "compare_with_trace", "attach_impact", "diff_checkpoints",
    "audit_to_json", "render_audit_markdown",
]
