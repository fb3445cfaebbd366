"""Markdown for `parity compare --all-ranks` and `--sharded`: a per-rank table and each run's replica consistency."""

from __future__ import annotations

from parity.results import RanksResult

#: Per-step rows shown for a sharded comparison (the JSON output has them all).
_MAX_STEP_ROWS = 40


def _cell(value: object) -> str:
    return "-" if value is None else str(value).replace("|", "\\|")


def render_ranks_markdown(result: RanksResult) -> str:
    """The verdict, one row per rank (verdict, first divergence), the consistency findings, the sharded finding."""
    lines = [f"# Every rank: {result.verdict}", ""]
    if result.comparisons:
        lines += ["| rank | verdict | first divergence | channel | steps (baseline / candidate) | diagnosis |",
                  "| ---: | --- | ---: | --- | --- | --- |"]
        for rank, c in sorted(result.comparisons.items()):
            fd = c.first_divergence or {}
            steps = " / ".join(_cell(info.get("steps")) for info in c.sides.values())
            lines.append(f"| {rank} | {c.verdict} | {_cell(fd.get('step'))} | {_cell(fd.get('channel'))} | {steps} | "
                         f"{_cell(fd.get('diagnosis'))} |")
        lines.append("")
    lines += ["## Replica consistency", "", "| run | status | step | finding |", "| --- | --- | ---: | --- |"]
    for side, f in result.consistency.items():
        lines.append(f"| {side} | {f.status} | {_cell(f.first_divergent_step)} | {_cell(f.summary)} |")
    lines.append("")
    if result.sharded is not None:
        f, ev = result.sharded, result.sharded.evidence
        lines += ["## Sharded against unsharded", "", f"**{f.status}**: {f.summary}", "",
                  f"World sizes {ev.get('world_sizes')}, tolerance {ev.get('tolerance')}; {ev.get('strength')}.", "",
                  "| step | baseline loss | candidate loss | rel | ulp | params equal | param bits moved |",
                  "| ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
        for row in ev.get("per_step", [])[:_MAX_STEP_ROWS]:
            rel = row.get("rel")
            lines.append(f"| {row['step']} | {_cell(row.get('baseline_loss'))} | {_cell(row.get('candidate_loss'))} | "
                         f"{'-' if rel is None else f'{rel:.3g}'} | {_cell(row.get('ulps'))} | "
                         f"{_cell(row.get('params_equal'))} | {_cell(row.get('param_bits_moved'))} |")
        lines.append("")
    return "\n".join(lines)
