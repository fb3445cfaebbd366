"""Markdown for `parity ablate`: the per-change table with measured "affects training" and evidence."""

from __future__ import annotations

from typing import Any

import pandas as pd

from parity.results import AblationResult


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:+.3g}%" if pct else f"{x:.4g}"


def _where(fd: dict[str, Any] | None) -> str:
    return f"step {fd['step']} ({fd['channel']})" if fd else "-"


def render_ablation_markdown(result: AblationResult, commands: list[str]) -> str:
    p = result.pair
    keys = sorted({k for m in result.metrics.values() for k in m})
    rows = []
    for t in result.toggles:
        row = {"change": f"`{t.toggle.name}`",
               "alone on baseline": t.applied.verdict, "first divergence": _where(t.applied.first_divergence),
               "final loss change": _fmt(t.applied_effect),
               "reverted on candidate": t.reverted.verdict, "first divergence ": _where(t.reverted.first_divergence),
               "final loss change ": _fmt(t.reverted_effect)}
        for k in keys:
            row[f"{k} (baseline + change)"] = _fmt(t.metrics.get(f"apply-{t.toggle.name}", {}).get(k), pct=False)
        row["max grad norm (baseline + change)"] = _fmt(t.stability.get("max_grad_norm"), pct=False)
        row["first non-finite loss"] = t.stability.get("first_nonfinite_loss_step") if t.stability.get("first_nonfinite_loss_step") is not None else "-"
        rows.append(row)
    affecting = [t.toggle.name for t in result.toggles if t.applied.verdict == "DIFFERENT"]
    inert = [t.toggle.name for t in result.toggles if t.applied.verdict in ("IDENTICAL", "EQUIVALENT")]
    fd = result.baseline.first_divergence
    lines = [f"# Ablation: {p.name}", "", p.description, "",
             f"Baseline vs candidate: **{result.baseline.verdict}**"
             + (f", first divergence at step {fd['step']} in `{fd['channel']}`." if fd else "."), "",
             f"Each of the {len(result.toggles)} changes was applied alone to the baseline and reverted alone on the "
             "candidate, and each run compared bit for bit with its counterpart. Final loss is the mean over the last "
             f"10% of steps; the baseline's own run-to-run noise on it is {_fmt(result.noise_floor)} "
             "(two recordings of the baseline). Applied changes are judged against the baseline's recorded noise, "
             "reverted ones against the candidate's (it is recorded twice too).", "",
             pd.DataFrame(rows).to_markdown(index=False), "",
             f"**Changes that alter training on their own:** {', '.join(f'`{n}`' for n in affecting) or 'none'}.", "",
             f"**Changes that leave training bit-identical (or within the noise floor):** "
             f"{', '.join(f'`{n}`' for n in inert) or 'none'}.", ""]
    base_stab = result.stability.get("baseline", {})
    worst = max(result.toggles, key=lambda t: t.stability.get("max_grad_norm") or 0.0, default=None)
    if worst is not None and base_stab.get("max_grad_norm") is not None:
        lines += [f"Instability: the baseline's largest pre-clip gradient norm is {_fmt(base_stab['max_grad_norm'], pct=False)}; "
                  f"the largest with a single change applied is {_fmt(worst.stability.get('max_grad_norm'), pct=False)} "
                  f"(`{worst.toggle.name}`). Runs with a non-finite loss: "
                  + (", ".join(f"`{t.toggle.name}` (step {t.stability['first_nonfinite_loss_step']})" for t in result.toggles
                               if t.stability.get("first_nonfinite_loss_step") is not None) or "none") + ".", ""]
    if keys:
        base_metrics = result.metrics.get("baseline", {})
        cand_metrics = result.metrics.get("candidate", {})
        lines += ["Trainer metrics (last value in its metrics file): " + "; ".join(
            f"{k}: baseline {_fmt(base_metrics.get(k), pct=False)}, candidate {_fmt(cand_metrics.get(k), pct=False)}"
            for k in keys) + ".", ""]
    lines += ["## Reproduce", "", "```bash", *commands, "```", ""]
    return "\n".join(lines)
