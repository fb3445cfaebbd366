"""Render a FeatureMatrix as markdown in the seed's shape (feature | A | B | status | evidence), or as JSON."""

from __future__ import annotations

import json
from typing import Any

from parity.features.matrix import DIFFERENT, IDENTICAL, NOT_CHECKED, ONLY_A, ONLY_B, SECTIONS, FeatureMatrix
from parity.report.render import to_json_text, without_machine_paths

_MARK = {IDENTICAL: "✅ identical", DIFFERENT: "❌ different", ONLY_A: "◐ only in A", ONLY_B: "◑ only in B",
         NOT_CHECKED: "· not checked"}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _throughput_section(data: Any) -> list[str]:
    """The benchmark's JSON as a table where it is a list of flat records or holds one (its scalars listed above)."""
    lines = ["## Throughput benchmark", ""]
    records = next((v for v in data.values() if _records(v)), None) if isinstance(data, dict) else data
    if isinstance(data, dict):
        lines += [f"- {k}: {_cell(v)}" for k, v in data.items() if not isinstance(v, (list, dict))]
        lines += [""] if len(lines) > 2 else []
    if _records(records):
        keys = list(dict.fromkeys(k for r in records for k in r))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in records]
    else:
        lines += ["```json", json.dumps(data, indent=2, default=str), "```"]
    return lines + [""]


def _numerics_lines(n: dict[str, Any], title: str) -> list[str]:
    lines = [f"### {title}", "", f"- verdict of parity's checks: **{n.get('verdict')}**",
             f"- data: {n['data']['status']}: {n['data']['summary']}",
             f"- loss: {n['loss']['status']}: {n['loss']['summary']}"]
    fd = n.get("first_divergence")
    if fd:
        lines.append(f"- first divergence: step {fd['step']}, channel {fd['channel']}: {fd['diagnosis']}")
    at = n["loss"]["evidence"].get("at_first_divergence")
    if at:
        lines.append(f"- loss at the first differing step: A {at['baseline']} vs B {at['candidate']} "
                     f"(rel {at['rel']:.3g}, {at['ulps']} ulp)")
    end = n["loss"]["evidence"].get("at_end")
    if end:
        lines.append(f"- loss at step {end['step']}: A {end['baseline']} vs B {end['candidate']} (rel {end['rel']:.3g})")
    return lines + [""]


def render_markdown(m: FeatureMatrix) -> str:
    a, b = m.labels
    counts = m.counts()
    lines = [f"# Feature matrix: {a} vs {b}", "",
             "Every row is measured from the two runs (traces, files written, re-runs), never written by hand.", "",
             f"- A: `{a}` (run `{m.runs[0]}`)", f"- B: `{b}` (run `{m.runs[1]}`)",
             "- rows: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), ""]
    lines += ["## Feature Matrix", "", "| Feature | A | B | Status | Evidence |", "|---|---|---|---|---|"]
    for section in SECTIONS:
        rows = [r for r in m.rows if r.section == section]
        if rows:
            lines.append(f"| **{section}** | | | | |")
            lines += [f"| {_cell(r.feature)} | {_cell(r.a)} | {_cell(r.b)} | {_MARK[r.status]} | {_cell(r.evidence)} |"
                      for r in rows]
    lines += ["", "## Token stream and losses", ""]
    lines += _numerics_lines(m.numerics, f"{a} vs {b}, as run")
    if m.numerics.get("same_stream"):
        same = m.numerics["same_stream"]
        lines += _numerics_lines(same, f"pair `{same['pair']}`: the same trainers fed one token stream")
    if m.throughput is not None:
        lines += _throughput_section(m.throughput)
    if m.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in m.notes], ""]
    lines += ["## Reproduce", "", "From the project root:", "", "```bash", *m.reproduce, "```", ""]
    return without_machine_paths("\n".join(lines), list(m.runs))


def render_json(m: FeatureMatrix) -> str:
    return without_machine_paths(to_json_text(m.to_json()), list(m.runs))
