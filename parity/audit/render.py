"""Turn an Audit into its JSON document or its Markdown report; returns text and dicts, never writes.

The Markdown follows the checkpoint-spec analysis it automates: a "✅ Saved" / "❌ NOT saved" /
"➖ Not applicable" list, then one table row per category.
"""

from __future__ import annotations

from typing import Any

from parity.audit.result import FORMAT_VERSION, NOT_APPLICABLE, NOT_SAVED, SAVED, Audit, CategoryResult, by_status

STATUS_LABELS = {SAVED: "✅ Saved", NOT_SAVED: "❌ NOT saved", NOT_APPLICABLE: "➖ Not applicable"}

_TITLES = {
    "model": "Model parameters",
    "optimizer": "Optimizer state",
    "scheduler": "Learning-rate scheduler state",
    "grad_scaler": "GradScaler state",
    "rng_python": "Python RNG state",
    "rng_numpy": "NumPy RNG state",
    "rng_torch": "Torch CPU RNG state",
    "rng_cuda": "CUDA RNG states",
    "counters": "Counters (epoch, step)",
    "data_position": "Data position (sampler, batch index)",
    "early_stopping": "Early-stopping state",
    "config": "Run configuration",
}


def audit_to_json(audit: Audit) -> dict[str, Any]:
    """A JSON-ready dict: checkpoint, categories (category, status, evidence, used, impact), and context."""
    return {
        "checkpoint": audit.checkpoint,
        "categories": [
            {"category": r.category, "status": r.status, "evidence": r.evidence, "used": r.used, "impact": r.impact}
            for r in audit.categories
        ],
        "format_version": FORMAT_VERSION,
        "trace": audit.trace,
        "summary": {status: [r.category for r in results] for status, results in by_status(audit).items()},
        "notes": list(audit.notes),
    }


def render_audit_markdown(audit: Audit, against_diff: list[dict[str, Any]] | None = None) -> str:
    """The audit as Markdown; with `against_diff` (from `diff_checkpoints`) a structure-diff section follows."""
    lines = [f"# Checkpoint audit: `{audit.checkpoint}`", ""]
    if audit.trace:
        lines += [f"Compared with the run's trace `{audit.trace}`: \"used\" says what the run needed.", ""]
    else:
        lines += ["No trace given: statuses come from the checkpoint alone, so nothing is \"not applicable\" "
                  "and an unsaved state may be one the run never used.", ""]
    groups = by_status(audit)
    for status in (SAVED, NOT_SAVED, NOT_APPLICABLE):
        lines += _section(status, groups[status])
    lines += ["## Summary", "", "| category | status | evidence | measured impact |", "|---|---|---|---|"]
    for result in audit.categories:
        lines.append(f"| {result.category} | {STATUS_LABELS[result.status]} | {_cell(result.evidence)} "
                     f"| {_cell(result.impact or '')} |")
    lines.append("")
    if audit.notes:
        lines += ["## Notes", ""] + [f"- {_inline(note)}" for note in audit.notes] + [""]
    if against_diff is not None:
        lines += _diff_section(against_diff)
    return "\n".join(lines).rstrip("\n") + "\n"


def _section(status: str, results: list[CategoryResult]) -> list[str]:
    lines = [f"## {STATUS_LABELS[status]}", ""]
    if not results:
        return lines + ["(none)", ""]
    for result in results:
        lines.append(f"- **{_TITLES[result.category]}** (`{result.category}`)")
        lines.append(f"  - Evidence: {_inline(result.evidence)}")
        if result.used is not None:
            lines.append(f"  - Used by the run: {'yes' if result.used else 'no'}")
        if result.impact:
            lines.append(f"  - Measured impact: {_inline(result.impact)}")
    return lines + [""]


def _diff_section(diff: list[dict[str, Any]]) -> list[str]:
    lines = ["## Structure compared with the other checkpoint", ""]
    if not diff:
        return lines + ["No structural differences (same keys, tensor shapes, dtypes and scalar types).", ""]
    lines += ["| path | change | this | other |", "|---|---|---|---|"]
    for entry in diff:
        lines.append(f"| {_cell(entry['path'])} | {entry['change']} | {_cell(entry['a'] or '')} "
                     f"| {_cell(entry['b'] or '')} |")
    return lines + [""]


def _inline(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: Any) -> str:
    """Table cell text: one line, pipes escaped so a key path cannot split the row."""
    return _inline(str(text)).replace("|", "\\|")
