"""Markdown for a resume check: verdict per split, the double resume, and the state-impact table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from parity.results import ResumeResult


def _pct(rel: Any) -> str:
    return "n/a" if rel is None else f"{100 * rel:.4g}%"


def _split_rows(segments) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [{"resumed at": s.at, "steps before": s.offset, "exact": "✅ yes" if s.exact else "❌ no",
             "first divergent step": s.first_divergent_step if s.first_divergent_step is not None else "-",
             "channel": s.channel or "-", "loss diff at first / +10% / end": " / ".join(
                 _pct((s.loss_rel.get(k) or {}).get("rel")) for k in ("first", "plus_10pct", "end")) if s.loss_rel else "-",
             "diagnosis": s.diagnosis or "bit-identical from the resume on"} for s in segments]


def render_resume_markdown(result: ResumeResult, commands: list[str]) -> str:
    p = result.protocol
    if result.ignored_resume:
        verdict = "❌ RESUME IGNORED: the resumed run starts from scratch"
    else:
        verdict = "✅ EXACT (bit-identical after every resume)" if result.exact else "❌ NOT EXACT"
    lines = [f"# Resume check: {p.name}", "", p.description, "",
             f"**Verdict: {verdict}.** Continuous run: {result.continuous_steps} optimizer steps "
             f"({p.total} {p.unit}). Each split stops the run after k {p.unit} with a checkpoint, resumes it in a fresh "
             "process, and compares every later step with the continuous run bit for bit (loss, lr, batches, "
             "gradient norm, parameters, optimizer state, loop order).", "", "## Splits", "",
             pd.DataFrame(_split_rows(result.splits)).to_markdown(index=False), ""]
    units = [(s.at, u) for s in result.splits for u in s.per_unit]
    if units:
        rows = []
        for at, u in units:
            row = {f"resumed after {p.unit[:-1]}": at, p.unit[:-1]: u["unit"], "train loss, continuous": f"{u['continuous']:.6g}",
                   "train loss, resumed": f"{u['resumed']:.6g}", "train-loss difference": _pct(u["rel"])}
            if "metric" in u:
                m = u["metric"]
                row[f"{m['label']}, continuous"] = f"{m['continuous']:.6g}"
                row[f"{m['label']}, resumed"] = f"{m['resumed']:.6g}"
                row[f"{m['label']} difference"] = _pct(m["rel"])
            rows.append(row)
        lines += [f"## Train-loss difference per {p.unit[:-1]} after the resume", "",
                  "Mean training loss over each epoch's optimizer steps (as recorded by parity), continuous run vs "
                  "resumed run" + (f"; {p.metrics.get('label', 'the metric')} as the trainer logged it to "
                                   f"`{p.metrics['file']}` (the lines each run appended)" if p.metrics.get("file") else
                                   "; the trainer's own evaluation is not part of the trace") + ".", "",
                  pd.DataFrame(rows).to_markdown(index=False), ""]
    if result.double:
        lines += ["## Double resume (stop, resume, stop, resume)", "",
                  pd.DataFrame(_split_rows(result.double)).to_markdown(index=False), ""]
    if result.controls:
        rows = [{"state left out": c["state"], "first divergent step": c["first_divergent_step"] if c["first_divergent_step"] is not None else "-",
                 "channel": c["channel"] or "-",
                 "loss diff at k": _pct((c["loss_rel"].get("first") or {}).get("rel")),
                 "at k+10%": _pct((c["loss_rel"].get("plus_10pct") or {}).get("rel")),
                 "at T": _pct((c["loss_rel"].get("end") or {}).get("rel")), "verdict": c["verdict"]}
                for c in result.controls]
        fired = sum(c["fired"] for c in result.controls)
        lines += ["## Negative controls: state-impact table", "",
                  f"Each control resumes from the split at {result.controls[0]['at']} {p.unit} while parity turns one "
                  "restore call into a no-op, without touching the trainer. Loss differences are relative, against "
                  "the continuous run.", "", pd.DataFrame(rows).to_markdown(index=False), ""]
        if fired == 0:
            lines += ["**No control fired: this resume check proves nothing about which state matters** "
                      "(either the trainer restores nothing through these calls, or nothing restored matters).", ""]
        else:
            lines += [f"{fired} of {len(result.controls)} controls fired: the check is able to see missing state.", ""]
    lines += ["## Reproduce", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)
