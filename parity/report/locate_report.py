"""Markdown for `parity locate`: the first differing op, why, how big the difference is, settings tried, Reproduce."""

from __future__ import annotations

from typing import Sequence

from parity.explain.locate import Location, TensorDifference, describe, module_label
from parity.explain.locate_runs import LocateResult
from parity.trace import deep as ds


def _g(x: float | str | None) -> str:
    return "n/a" if x is None else (x if isinstance(x, str) else f"{x:.3g}")


def _sum(x: float | str | None) -> str:
    return "n/a" if x is None else (x if isinstance(x, str) else f"{x:.10g}")


def _tensors(infos: Sequence[ds.TensorInfo]) -> str:
    return ", ".join(f"{t.dtype}{list(t.shape)}" for t in infos) or "none"


def _difference(d: TensorDifference) -> str:
    size = (f"max abs error {_g(d.max_abs)}, max rel error {_g(d.max_rel)} over {d.samples} evenly spaced values "
            f"({d.differing_samples} of them differ)" if d.samples else "no comparable values")
    return (f"- {d.role} {d.index} ({d.dtype}{list(d.shape)}): {size}; sum {_sum(d.sum_baseline)} (baseline) vs "
            f"{_sum(d.sum_candidate)} (candidate)")


def _side_table(location: Location, labels: tuple[str, str]) -> list[str]:
    a, b = location.baseline, location.candidate
    rows = [("what", lambda r: describe(r)["what"]), ("module", lambda r: module_label(r.module)),
            ("phase", lambda r: r.phase), ("inputs", lambda r: _tensors(r.inputs)),
            ("arguments", lambda r: r.arguments or "none"), ("outputs", lambda r: _tensors(r.outputs)),
            ("called from", lambda r: r.caller or "autograd engine thread"), ("record", lambda r: f"#{r.seq}")]
    lines = [f"| | {labels[0]} | {labels[1]} |", "|---|---|---|"]
    for name, get in rows:
        cells = [f"`{get(r)}`".replace("|", "\\|") if r is not None else "(none)" for r in (a, b)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return lines


def _headline(result: LocateResult) -> list[str]:
    deep = result.deep
    if result.step is None:
        fd = "the two runs are bit-identical in every recorded channel"
        return [f"**No divergence to localise**: {fd}; nothing was re-run (pass `--step K` to compare one step op by op).", ""]
    assert deep is not None
    if deep.location is None:
        return [f"**No differing op**: the deep captures of step {result.step} match record for record "
                f"({deep.baseline_records} records: every op's inputs and outputs bit-identical).", "",
                *(["The recorded runs diverged at this step, but the re-runs did not: the difference does not reproduce "
                   "every run (nondeterminism that shows only sometimes); run locate again to catch it.", ""]
                  if result.step_source == "first divergence" else [])]
    loc = deep.location
    r = loc.record
    what = describe(r)
    where = f"in module `{module_label(r.module)}`" if r.module is not None else "outside any module"
    detail = f" ({loc.detail})" if loc.detail else ""
    return [f"**Located**: `{what['what']}` {where}, {r.phase}, step {result.step}: {loc.explanation}{detail}.", ""]


def render_locate_markdown(result: LocateResult) -> str:
    labels = result.labels
    lines = [f"# parity locate: {labels[0]} vs {labels[1]}", "", f"Device: {result.device}.", "", *_headline(result)]
    deep = result.deep
    if deep is not None and deep.location is not None:
        loc = deep.location
        lines += _side_table(loc, labels) + [""]
        if loc.differences:
            lines += ["How the values differ (from the captured sums and evenly spaced samples):", ""]
            lines += [_difference(d) for d in loc.differences] + [""]
        if loc.module_record is not None:
            m = loc.module_record
            lines += [f"First module whose outputs differ while its inputs match: `{module_label(m.module)}` ({m.phase}).", ""]
    lines += ["## How the step was chosen", ""]
    fd = result.first_divergence
    if fd:
        lines.append(f"- first divergence of the recorded runs: step {fd.get('step')}, channel {fd.get('channel')}: "
                     f"{fd.get('diagnosis', '')}")
    else:
        lines.append("- the recorded runs do not diverge")
    lines.append(f"- runs compared: `{result.runs[0]}` and `{result.runs[1]}`")
    if result.step is not None:
        lines.append(f"- deep-captured step: {result.step} ({result.step_source})")
    if deep is not None:
        lines.append(f"- deep captures: `{deep.baseline}` ({deep.baseline_records} records) and `{deep.candidate}` "
                     f"({deep.candidate_records} records)")
    lines.append("")
    if result.trials:
        lines += ["## Settings tried", "", "Both sides re-run in full under each setting alone, then compared.", "",
                  "| setting | outcome | first divergence | detail |", "|---|---|---|---|"]
        for t in result.trials:
            where = f"step {t.step} ({t.channel})" if t.step is not None else "-"
            lines.append(f"| {t.setting.label} | {t.outcome} | {where} | {t.detail.replace('|', '/')} |")
        lines.append("")
    lines += ["## Reproduce", "", "```bash", *result.commands, "```", ""]
    return "\n".join(lines)
