"""Markdown for `parity attribute`: each differing setting set back alone, ranked by its effect, and the rest."""

from __future__ import annotations

from typing import Any, Sequence

from parity.results import AttributedSetting, AttributionResult


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.3g}%"


def value_text(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def revert_text(added: Sequence[str], removed: Sequence[str]) -> str:
    """How a setting was set back, as command-line tokens (or its options removed, leaving the default)."""
    if added:
        return f"`{' '.join(added)}`"
    return f"`removed {' '.join(removed)}`" if removed else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(s: AttributedSetting) -> str:
    vs_base = s.vs_baseline.verdict if s.vs_baseline is not None else "-"
    cells = [f"`{s.name}`", value_text(s.baseline), value_text(s.candidate), revert_text(s.added, s.removed), f"**{s.verdict}**",
             pct(s.effect), vs_base, s.note]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render_attribution_markdown(result: AttributionResult) -> str:
    fd = result.comparison.first_divergence
    lines = [f"# Attribution: {result.name}", "",
             f"Baseline vs candidate: **{result.comparison.verdict}**"
             + (f", first divergence at step {fd['step']} in `{fd['channel']}`." if fd else "."), "",
             f"**Finding:** {result.conclusion}", "",
             "Each setting that differs was set back to the baseline's value on the candidate's command line, alone "
             "(a setting only the candidate has: to its off value), and the run compared bit for bit with the candidate "
             "(judged against the candidate's own run-to-run noise) and with the baseline. Final loss is the mean over "
             "the last 10% of steps; the effect is the change of the candidate's final loss this setting accounts for.", "",
             "| setting | baseline | candidate | set back with | verdict | final loss effect | set back vs baseline | note |",
             "|:--|:--|:--|:--|:--|--:|:--|:--|", *(_row(s) for s in result.settings), ""]
    if result.rest is not None:
        rfd = result.rest.first_divergence
        lines += [f"**Every setting set back together**, against the baseline: **{result.rest.verdict}**"
                  + (f", first divergence at step {rfd['step']} in `{rfd['channel']}`." if rfd else "."), ""]
        if result.rest.code.changed:
            lines += ["Code that differs: " + "; ".join(f.describe() for f in result.rest.code.files) + ".", ""]
    if result.rest_settings:
        shown = "; ".join(f"`{c['path'].replace('root', '')}` {value_text(c.get('baseline', '(absent)'))} -> "
                          f"{value_text(c.get('candidate', '(absent)'))}" for c in result.rest_settings[:8])
        more = f" and {len(result.rest_settings) - 8} more" if len(result.rest_settings) > 8 else ""
        lines += [f"Settings that still differ with every argument set back (not on the command line): {shown}{more}.", ""]
    lines += ["## Reproduce", "", "```bash", result.reproduce, "```", ""]
    return "\n".join(lines)
