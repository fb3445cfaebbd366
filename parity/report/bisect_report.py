"""Markdown for `parity bisect`: the first bad commit, the divergence it causes, every commit tested."""

from __future__ import annotations

from parity.explain.bisect import AMBIGUOUS, BAD, MATCHES, BisectResult, TestedCommit


def _divergence(t: TestedCommit) -> str:
    fd = t.first_divergence
    return f"step {fd['step']}, `{fd['channel']}`" if fd and t.verdict == BAD else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_bisect_markdown(result: BisectResult) -> str:
    good, bad = result.good_sha[:7], result.bad_sha[:7]
    lines = [f"# Bisect: {result.pair} ({result.side} side)", "",
             f"Good revision `{result.good}` ({good}) against bad revision `{result.bad}` ({bad}): "
             f"{result.commits} commits on the first-parent line. Each tested commit's {result.side} run is compared "
             f"with the good revision's {result.side} run (bitwise, or within the pair's tolerances).", ""]
    first = result.first_bad
    if result.status == MATCHES or first is None:
        lines += [f"**Nothing to bisect:** the {result.side} side trains at `{result.bad}` as it does at "
                  f"`{result.good}`.", ""]
    else:
        lines += [f"**First bad commit:** `{first.sha[:12]}` {first.subject}", ""]
        if result.status == AMBIGUOUS:
            lines += ["The skipped commits before it hide which one is first: the first bad commit is one of "
                      + ", ".join(f"`{sha[:12]}`" for sha in result.candidates) + f" or `{first.sha[:12]}`.", ""]
        lines += ["```text", result.message, "```", ""]
        fd = first.first_divergence
        if fd:
            lines += [f"**First divergence it causes:** step {fd['step']}, channel `{fd['channel']}`: {fd['diagnosis']}",
                      ""]
    lines += ["## Commits tested", "", "| commit | subject | verdict | comparison | first divergence |",
              "|---|---|---|---|---|"]
    for t in result.tested:
        cached = " (cached)" if t.cached else ""
        lines.append(f"| `{t.sha[:12]}` | {_cell(t.subject)} | {t.verdict}{cached} | {t.comparison or '-'} "
                     f"| {_divergence(t)} |")
    lines += ["", f"Runs recorded: {result.runs_recorded}; reused from the cache: {result.runs_reused} "
              "(the good revision's reference run included).", ""]
    if result.skipped:
        lines += ["## Skipped", "", "Commits whose command failed or recorded nothing (like `git bisect skip`):", ""]
        lines += [f"- `{t.sha[:12]}` {t.subject}: {t.reason}" for t in result.skipped]
        lines.append("")
    if result.reproduce:
        lines += ["## Reproduce", "", "```bash", *result.reproduce, "```", ""]
    return "\n".join(lines)
