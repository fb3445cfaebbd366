"""Markdown report in the shape of the hand-written seeds, with every statement derived from findings."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from parity.checks.base import Finding
from parity.checks.compare import Comparison
from parity.report.explanation import explanation_lines
from parity.report.plots import write_plots
from parity.report.render import without_machine_paths
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import StepView, TraceMeta

_ICON = {schema.IDENTICAL: "✅", schema.EQUIVALENT: "🟰", schema.DIFFERENT: "❌", schema.NOT_COMPARED: "➖"}
_MAX_CONFIG_ROWS = 12
_ABSENT = (None, "(absent)")
#: Where command-line settings sit in a config change's deepdiff path (run_config's argparse section).
_ARGS_PATH = f"root['{schema.META_ARGPARSE}']"
_TITLES = {"config": "Configuration", "step_order": "Loop order", "model": "Model structure", "data": "Data (batches)",
           "train_mode": "Training mode", "loss": "Loss",
           "grad_norm": "Gradient norm and clipping", "lr_schedule": "Learning-rate schedule",
           "params": "Parameters", "optimizer_state": "Optimizer state"}


@dataclass
class ReportContext:
    """What the report needs besides the comparison: names, traces and reproduce commands."""

    baseline: Trace
    candidate: Trace
    labels: tuple[str, str] = ("baseline", "candidate")
    commands: list[str] = field(default_factory=list)
    description: str = ""
    expectations: dict[str, tuple[str, str]] = field(default_factory=dict)
    title: str = ""
    """Shown in the heading (the pair name); the side labels are used when empty."""
    generated_by: str = "parity report"
    """The subcommand that generated the report, named in the heading."""
    explanations: list[dict[str, Any]] = field(default_factory=list)
    """Saved or inline `parity locate|bisect|attribute` results (JSON): rendered as the Explanation section."""


def _table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_none_"


def _commit(trace: Trace) -> str:
    """The trainer source's revision as a noun phrase for a sentence: "commit 1a2b3c4d5e (dirty)" or "outside git"."""
    meta = TraceMeta.of(trace)
    if not meta.commit:
        return "outside git"
    return f"commit {meta.commit[:10]}{' (dirty)' if meta.dirty else ''}"


def _final_loss(trace: Trace) -> str:
    for record in reversed(trace.steps):
        step = StepView(record)
        loss = step.first_loss
        if loss is not None:
            return f"{loss.value} at step {step.index}"
    return "none recorded"


def _affects(f: Finding) -> str:
    if f.status == schema.IDENTICAL:
        return "No: bit-identical"
    if f.status == schema.EQUIVALENT:
        return "No (within tolerance/noise)" if f.affects_training else "No: cannot change an update"
    if f.status == schema.NOT_COMPARED:
        return "Not measured"
    return f"**YES**, from step {f.first_divergent_step}" if f.affects_training else "Not by itself (see measured channels)"


_CATEGORY_TITLES = {"model": "Model structure", "labels": "Labels", "data_content": "Data content",
                    "data_order": "Data order", "augmentation": "Augmentation / transforms", "optimizer": "Optimizer",
                    "schedule": "LR schedule", "clipping": "Gradient clipping", "numerics": "Numerics",
                    "mode": "Training mode", "loop": "Loop order", "config": "Settings", "code": "Code",
                    "inert": "Inert settings", "unattributed": "Unattributed"}


def _cause_lines(c: Comparison) -> list[str]:
    """What changed, root causes first; consequences say what they follow from."""
    lines = []
    for i, cause in enumerate(c.causes, 1):
        title = _CATEGORY_TITLES.get(cause.category, cause.category)
        step = f" (from step {cause.step})" if cause.step is not None else ""
        follows = f" _Consequence of the {_CATEGORY_TITLES.get(cause.consequence_of, cause.consequence_of).lower()} " \
                  "change, not a cause of its own._" if cause.consequence_of else ""
        lines.append(f"{i}. **{title}**{step}: {cause.summary}.{follows}")
    return lines


def _finding_rank(f: Finding) -> tuple[int, int]:
    # Differences that change training first, then explanatory differences, then what matches.
    order = {schema.DIFFERENT: 0, schema.EQUIVALENT: 2, schema.NOT_COMPARED: 3, schema.IDENTICAL: 4}
    return (order[f.status] + (0 if f.affects_training else 1), 0)


def _summary_lines(c: Comparison, ctx: ReportContext) -> list[str]:
    lines = []
    for i, f in enumerate(sorted(c.findings, key=_finding_rank), 1):
        lines.append(f"{i}. {_ICON[f.status]} **{_TITLES[f.name]}: {f.status}**: {f.summary}.")
    return lines


def _quick_reference(c: Comparison, ctx: ReportContext) -> list[dict[str, Any]]:
    rows = []
    training_differs = c.verdict == schema.DIFFERENT
    changes = c.finding("config").evidence.get("changes", [])
    for change in changes[:_MAX_CONFIG_ROWS]:
        if training_differs:
            affects = "Not measured alone: training differs (see ranked causes); `parity ablate` measures it"
        else:
            affects = f"No: training channels are {c.verdict}"
        rows.append({"aspect": f"config `{change['path'].replace('root', '')}`", "baseline": change.get("baseline", "(absent)"),
                     "candidate": change.get("candidate", "(absent)"), "affects training?": affects})
    if len(changes) > _MAX_CONFIG_ROWS:
        rows.append({"aspect": f"... {len(changes) - _MAX_CONFIG_ROWS} more settings", "baseline": "", "candidate": "",
                     "affects training?": "listed under Checks > Configuration"})
    paths = c.finding("config").evidence.get("paths", [])
    if paths:
        rows.append({"aspect": f"{len(paths)} path setting(s)", "baseline": "", "candidate": "",
                     "affects training?": "No: where files are written (" + ", ".join(
                         p["path"].replace("root", "") for p in paths[:3]) + (" ..." if len(paths) > 3 else "") + ")"})
    rows.append({"aspect": "final loss", "baseline": _final_loss(ctx.baseline), "candidate": _final_loss(ctx.candidate),
                 "affects training?": _affects(c.finding("loss"))})
    for f in c.findings:
        if f.name == "config":
            continue
        rows.append({"aspect": _TITLES[f.name], "baseline": "", "candidate": "", "affects training?": f"{_affects(f)}: {f.summary}"})
    return rows


def _recommendations(c: Comparison, ctx: ReportContext) -> list[str]:
    out = []
    config_changes = c.finding("config").evidence.get("changes", [])
    # Only values both sides set count as "give the candidate the baseline's value"; an option that
    # exists on one side only (or is None: unset) cannot be copied across.
    arg_changes = [ch for ch in config_changes if ch["path"].startswith(_ARGS_PATH)
                   and ch.get("baseline", "(absent)") not in _ABSENT and ch.get("candidate", "(absent)") not in _ABSENT]
    if c.verdict == schema.IDENTICAL:
        out.append(f"The candidate reproduces the baseline bit for bit over {min(len(ctx.baseline.steps), len(ctx.candidate.steps))} "
                   "steps in every measured channel; nothing needs to change to reproduce it.")
        if c.finding("step_order").status != schema.IDENTICAL:
            out.append("The loop order differs, but every training channel is bit-identical: the reordering is harmless here.")
    floor = c.noise if c.noise and "loss_max_rel" in c.noise else None
    if floor and floor["deterministic"]:
        ops = floor["nondeterministic_ops"]
        note = (f"; torch reported ops without a deterministic kernel ({', '.join(ops)}), but they did not change any bit here"
                if ops else "")
        out.append(f"The baseline was recorded twice and is bit-identical with itself{note}: every difference above is "
                   "attributable to the candidate.")
    if floor and not floor["deterministic"]:
        ops = ", ".join(floor["nondeterministic_ops"]) or "no op reported by torch"
        out.append(f"The baseline is not deterministic with itself (noise floor: loss rel {floor['loss_max_rel']:.3g}; "
                   f"nondeterministic ops: {ops}). Differences within {floor['margin']:g}x that floor are not blamed on the candidate.")
    if c.verdict in (schema.DIFFERENT, schema.EQUIVALENT) and c.first_divergence:
        fd = c.first_divergence
        out.append(f"The first measured divergence is at step {fd['step']} in `{fd['channel']}`: {fd['diagnosis']}")
        if arg_changes:
            settings = "; ".join(f"`{ch['path'].replace('root', '')}` = {ch.get('baseline', '(absent)')!r} in the baseline, "
                                 f"{ch.get('candidate', '(absent)')!r} in the candidate" for ch in arg_changes)
            out.append(f"To reproduce the baseline exactly, start by giving the candidate the baseline's arguments: {settings}.")
        one_sided = [ch for ch in config_changes if ch["path"].startswith(_ARGS_PATH) and ch not in arg_changes
                     and (ch.get("baseline") is not None or ch.get("candidate") is not None)]
        if one_sided:
            out.append("Options that exist on one side only (the candidate's replacement flags need their own neutral "
                       "value): " + "; ".join(_one_sided(ch) for ch in one_sided[:8]) + ".")
        other = [ch for ch in config_changes if not ch["path"].startswith(_ARGS_PATH)]
        if other:
            out.append("Settings that differ outside the command line (hard-coded in the trainer or its environment): "
                       + "; ".join(f"`{ch['path'].replace('root', '')}` {ch.get('baseline', '(absent)')!r} -> "
                                   f"{ch.get('candidate', '(absent)')!r}" for ch in other[:6]) + ".")
    for trace, label in ((ctx.baseline, ctx.labels[0]), (ctx.candidate, ctx.labels[1])):
        if not trace.complete:
            out.append(f"The {label} trace is {trace.ended_how}; only its recorded steps were compared.")
        error = TraceMeta.of(trace).capture_error
        if error:
            out.append(f"Capture reported an internal error in the {label} run ({error.get('where')}); "
                       "fields recorded after it may be missing.")
    return out


def _one_sided(change: dict[str, Any]) -> str:
    side = "baseline" if "baseline" in change else "candidate"
    name = change["path"].replace(_ARGS_PATH, "")
    return f"`{name}` = {change[side]!r} ({side} only)"


def _environment(ctx: ReportContext) -> list[dict[str, Any]]:
    rows = []
    meta_a, meta_b = TraceMeta.of(ctx.baseline), TraceMeta.of(ctx.candidate)
    ma, mb = meta_a.run, meta_b.run
    for key in (schema.RUN_PYTHON, schema.RUN_TORCH, schema.RUN_CUDA, schema.RUN_DEVICE, schema.RUN_HOSTNAME,
                schema.RUN_CPUS):
        rows.append({"": key, ctx.labels[0]: ma.get(key), ctx.labels[1]: mb.get(key)})
    rows.append({"": "trainer source", ctx.labels[0]: _commit(ctx.baseline), ctx.labels[1]: _commit(ctx.candidate)})
    for key in (schema.H_SEED, schema.H_DETERMINISTIC, schema.H_LEVEL):
        rows.append({"": f"parity {key}", ctx.labels[0]: ctx.baseline.header.get(key), ctx.labels[1]: ctx.candidate.header.get(key)})
    for key in sorted(meta_a.numerics):
        rows.append({"": key, ctx.labels[0]: meta_a.numerics.get(key), ctx.labels[1]: meta_b.numerics.get(key)})
    rows.append({"": "steps recorded", ctx.labels[0]: len(ctx.baseline.steps), ctx.labels[1]: len(ctx.candidate.steps)})
    return rows


LOADED_FRACTION = 0.75
"""A side ran on a loaded machine when its 1-minute load average exceeded this fraction of the CPU count."""


def _performance(ctx: ReportContext) -> list[dict[str, Any]]:
    """Step time, peak memory and machine load of each side (first step left out: warm-up), then one note row.

    The two sides ran one after the other, not interleaved, so their step times are never turned into
    a speed-up or slowdown: the note row says so, and names a side whose machine was loaded.
    """
    rows = []
    loaded = []
    for trace, label in ((ctx.baseline, ctx.labels[0]), (ctx.candidate, ctx.labels[1])):
        walls = sorted(s[schema.F_WALL_MS] for s in trace.steps[1:] if s.get(schema.F_WALL_MS))
        median = walls[len(walls) // 2] if walls else None
        peak = max((s.get(schema.F_PEAK_MEM) or 0 for s in trace.steps), default=0)
        meta = TraceMeta.of(trace)
        ops = meta.nondeterministic_ops
        cpus = meta.cpus
        start, end = _one_minute_load(meta.load_at_start), _one_minute_load(meta.load_at_end)
        busy = [v for v in (start, end) if v is not None and cpus and v > LOADED_FRACTION * cpus]
        if busy:
            loaded.append(f"{label} (1-min load {max(busy):g} on {cpus} CPUs)")
        rows.append({"side": label, "steps": len(trace.steps), "median step (ms)": round(median, 2) if median else "n/a",
                     "peak memory (MiB)": round(peak / 2**20, 1), "device": meta.device,
                     "CPUs": cpus if cpus else "not recorded",
                     "1-min load, start / end": f"{_load_text(start)} / {_load_text(end)}",
                     "ops without a deterministic kernel": ", ".join(ops) if meta.deterministic else "(not in deterministic mode)"})
    note = ("not a speed claim: the two sides ran separately, not interleaved, so their step times differ with "
            "whatever else the machine did")
    if loaded:
        note += f"; loaded machine (1-min load above {LOADED_FRACTION:g} x CPUs): {', '.join(loaded)}"
    # The note sits under the step-time column it qualifies; blank cells keep pandas from printing "nan".
    rows.append({key: "" for key in rows[0]} | {"side": "note", "median step (ms)": note})
    return rows


def _one_minute_load(load: Any) -> float | None:
    if isinstance(load, (list, tuple)) and load and isinstance(load[0], (int, float)):
        return float(load[0])
    return None


def _load_text(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:g}"


def _check_section(f: Finding, ctx: ReportContext) -> list[str]:
    lines = [f"### {_TITLES[f.name]}: {_ICON[f.status]} {f.status}", "", f.summary + ".", ""]
    expected = ctx.expectations.get(f.name)
    if expected:
        ok = "as expected" if expected[0] == f.status else f"**NOT as expected ({expected[0]})**"
        lines += [f"Pair file expects {expected[0]}: {ok}. {expected[1]}", ""]
    if f.name == "config":
        rows = [{"setting": ch["path"].replace("root", ""), ctx.labels[0]: ch.get("baseline", "(absent)"),
                 ctx.labels[1]: ch.get("candidate", "(absent)")} for ch in f.evidence.get("changes", [])]
        lines += [_table(rows), ""]
    elif f.name == "model" and f.evidence.get("changes"):
        rows = [{"change": ch["kind"], "name": ch["name"], ctx.labels[0]: ch.get("baseline", ""),
                 ctx.labels[1]: ch.get("candidate", "")} for ch in f.evidence["changes"]]
        lines += [_table(rows), "", f"Parameters: {f.evidence.get('parameters')}.", ""]
    elif f.name == "step_order" and "baseline" in f.evidence:
        a, b = f.evidence["baseline"], f.evidence["candidate"]
        rows = [{"#": i, ctx.labels[0]: a[i] if i < len(a) else "", ctx.labels[1]: b[i] if i < len(b) else ""}
                for i in range(max(len(a), len(b)))]
        lines += [f"Events of step {f.evidence['step']}, side by side:", "", _table(rows), ""]
    else:
        evidence = {k: v for k, v in f.evidence.items() if k not in ("strength",)}
        if evidence:
            rows = [{"evidence": k, "value": v} for k, v in evidence.items()]
            lines += [_table(rows), ""]
        if "strength" in f.evidence:
            lines += [f"Match strength: {f.evidence['strength']}.", ""]
    return lines


def _noise_lines(c: Comparison) -> list[str]:
    """The noise floor the comparison was judged against: measured, calibrated, or none."""
    if not c.noise:
        return ["**Noise floor:** not measured (the baseline was recorded once; `--repeat` or `parity calibrate` "
                "measures it): every difference is reported as is.", ""]
    lines = []
    if "loss_max_rel" in c.noise:
        if c.noise["deterministic"]:
            lines.append("**Noise floor: zero.** The baseline, recorded twice, is bit-identical with itself.")
        else:
            lines.append(f"**Noise floor:** the baseline differs from itself (loss rel up to {c.noise['loss_max_rel']:.3g}); "
                         f"differences within {c.noise['margin']:g}x that are not blamed on the candidate.")
    bands = c.noise.get("bands")
    if bands:
        widths = ", ".join(f"{k} {v:.3g}" for k, v in bands["widths"].items())
        lines.append(f"**Calibrated band:** {bands['repeats']} runs of the baseline; "
                     + ("bitwise deterministic (zero band)." if bands["deterministic"] else f"max band width: {widths}."))
    return [*lines, ""]


def _code_section(c: Comparison) -> list[str]:
    """The trainer's source files that differ, with the functions that changed (explanatory only)."""
    if not c.code.recorded:
        return []
    if not c.code.changed:
        return ["### Code", "", "The trainer's own source files are identical on both sides.", ""]
    rows = [{"file": f.label, "changed": ", ".join(f.changed) or ("(whole file)" if not (f.baseline and f.candidate) else
             "(module level)"), "added": ", ".join(f.added), "removed": ", ".join(f.removed)} for f in c.code.files]
    return ["### Code", "", "Source files of the trainer that differ (functions compared through their syntax tree; "
            "shown beside the numeric findings, they decide nothing by themselves):", "", _table(rows), ""]


def _revision(trace: Trace) -> str:
    """Where the run's code stood, worded for the heading: "at <commit>", or why there is none in brackets."""
    in_git = bool(TraceMeta.of(trace).git)
    return f"at {_commit(trace)}" if in_git else f"({_commit(trace)})"


class MarkdownReporter:
    """Renders a Comparison as markdown and writes its plots beside the output file."""

    report_type = "md"

    def render(self, c: Comparison, ctx: ReportContext, outfile: Path | None) -> str:
        a, b = ctx.labels
        fd = c.first_divergence
        heading = f"{ctx.title} ({a} vs {b})" if ctx.title else f"{a} vs {b}"
        lines = [f"# Parity report: {heading}", "",
                 f"Generated by `{ctx.generated_by}` on {_dt.date.today().isoformat()}. Baseline `{a}` "
                 f"{_revision(ctx.baseline)}; candidate `{b}` {_revision(ctx.candidate)}. Every status below is "
                 "measured from recorded runs.", ""]
        if ctx.description:
            lines += [ctx.description.strip(), ""]
        lines += ["## Executive summary", "", f"**Verdict: {_ICON[c.verdict]} {c.verdict}** over "
                  f"{min(len(ctx.baseline.steps), len(ctx.candidate.steps))} compared steps.", ""]
        if fd:
            lines += [f"**First divergence:** step {fd['step']}, channel `{fd['channel']}`: {fd['diagnosis']}", ""]
        lines += _noise_lines(c)
        if c.causes:
            lines += ["**What changed, ranked by how directly it changes training**:", "", *_cause_lines(c), ""]
        lines += ["**Key findings**:", "", *_summary_lines(c, ctx), "", "### Quick reference: what changed?", "",
                  _table(_quick_reference(c, ctx)), ""]
        lines += [*explanation_lines(ctx.explanations), "## Checks", ""]
        for f in c.findings:
            lines += _check_section(f, ctx)
        lines += _code_section(c)
        if outfile is not None and ctx.baseline.steps and ctx.candidate.steps:
            plots = write_plots(ctx.baseline, ctx.candidate, outfile.with_suffix(""), ctx.labels)
            lines += ["## Plots", ""] + [f"![{kind}]({p.name})" for kind, p in plots.items()] + [""]
        lines += ["## Recommendations", "", *[f"- {r}" for r in _recommendations(c, ctx)], "",
                  "## Performance", "", "Wall time per step includes data loading and capture; peak memory is the CUDA "
                  "allocator's peak on GPU and the process's peak RSS on CPU.", "", _table(_performance(ctx)), "",
                  "## Environment", "", _table(_environment(ctx)), "",
                  "## Reproduce", "", "From a fresh clone, at the project root (the folder with pyproject.toml), "
                  "these commands re-create every number above:", "", "```bash", *ctx.commands, "```", ""]
        return without_machine_paths("\n".join(lines), [ctx.baseline.path, ctx.candidate.path])

