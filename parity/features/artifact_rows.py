"""Rows for what the runs wrote: charts, JSON exports and their schemas, checkpoint sets, other files, metric keys."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from parity.features.collect import CHART, CHECKPOINT, JSON_FILE, MAIN_MEMBER, ArtifactGroup, RunArtifacts
from parity.features.matrix import ABSENT, DATA, DIFFERENT, EXPORT, VIZ, Row, presence_status, value_row
from parity.features.schema import flatten_schema, schema_differences, summarize_problems

#: A metrics file: its name says so, or it is JSON lines.
_METRICS_FILE = re.compile(r"metric|history|log", re.IGNORECASE)
#: A logged metric that is a speed in tokens per second.
THROUGHPUT_KEY = re.compile(r"throughput|tokens?_per_s(ec(ond)?)?$|^tok_?s$|tokens?/s$", re.IGNORECASE)
#: A logged metric that counts the tokens (targets) of one step.
TOKENS_KEY = re.compile(r"^(n_|num_)?tokens(_per_step|_this_step)?$", re.IGNORECASE)
_SHOWN_NUMBERS = 6


def _numbers(group: ArtifactGroup) -> str:
    numbers = group.numbers
    if not numbers:
        return ""
    shown = ", ".join(map(str, numbers[:_SHOWN_NUMBERS])) + (", ..." if len(numbers) > _SHOWN_NUMBERS else "")
    return f" (numbered {shown})"


def _count(group: ArtifactGroup, noun: str) -> str:
    n = len(group.artifacts)
    return f"{n} {noun}{'' if n == 1 else 's'}{_numbers(group)}"


def _broken(group: ArtifactGroup) -> str | None:
    """The cell of a group with unusable files: "corrupt: why (path)", plus how many more are broken."""
    broken = [a for a in group.artifacts if a.problem]
    if not broken:
        return None
    more = f" (+{len(broken) - 1} more of {len(group.artifacts)})" if len(broken) > 1 else ""
    return f"{broken[0].problem} ({broken[0].path}){more}"


def _chart_cell(group: ArtifactGroup) -> tuple[str, Any]:
    sizes = sorted({(a.detail["width"], a.detail["height"]) for a in group.valid if "width" in a.detail})
    dims = ", ".join(f"{w}x{h}" for w, h in sizes) or "no readable size"
    broken = _broken(group)
    cell = broken or f"{_count(group, 'PNG')}, {dims}"
    return cell, (len(group.artifacts), tuple(sizes), bool(broken))


def _json_cell(group: ArtifactGroup) -> tuple[str, Any]:
    schema = group.merged_schema()
    broken = _broken(group)
    paths = len(flatten_schema(schema)) if schema else 0
    cell = broken or f"{_count(group, 'file')}, parsed; schema of {paths} paths"
    return cell, (len(group.artifacts), sorted(flatten_schema(schema).items()) if schema else None, bool(broken))


def _members(group: ArtifactGroup) -> list[str]:
    found = sorted({m for a in group.artifacts for m in a.detail["members"]}, key=lambda m: (m != MAIN_MEMBER, m))
    return [m or Path(group.pattern).suffix for m in found]


def _checkpoint_cell(group: ArtifactGroup) -> tuple[str, Any]:
    broken = _broken(group)
    members = " + ".join(_members(group))
    mib = max(a.size for a in group.artifacts) / 2**20
    cell = broken or f"{_count(group, 'set')}: {members}, {mib:.2f} MiB per set"
    return cell, (len(group.artifacts), tuple(_members(group)), bool(broken))


def _file_cell(group: ArtifactGroup) -> tuple[str, Any]:
    # Sizes are part of the key: two files of one name and different sizes are not the same artifact.
    return (f"{_count(group, 'file')}, {sum(a.size for a in group.artifacts):,} bytes",
            (len(group.artifacts), tuple(sorted(a.size for a in group.artifacts))))


_CELLS = {CHART: (_chart_cell, "chart", VIZ), JSON_FILE: (_json_cell, "JSON", EXPORT),
          CHECKPOINT: (_checkpoint_cell, "checkpoint set", EXPORT)}
_EVIDENCE = {CHART: "PNG signature and IHDR size read from each file, then decoded with Pillow",
             JSON_FILE: "each file parsed; schema (keys and value types) inferred and merged per pattern",
             CHECKPOINT: "files grouped into sets by their checkpoint name (X.bin, X.bin.embeddings, ...); "
                         "a set lacking a member that another set of the pattern has is incomplete"}


def _group_row(pattern: str, ga: ArtifactGroup | None, gb: ArtifactGroup | None) -> Row:
    kind = (ga or gb).kind
    cell, noun, section = _CELLS.get(kind, (_file_cell, "file", EXPORT))
    a, b = (cell(g) if g else (ABSENT, None) for g in (ga, gb))
    status = presence_status(a[1], b[1])
    evidence = _EVIDENCE.get(kind, "listed with their sizes")
    if status == DIFFERENT:
        evidence += "; " + _difference(kind, ga, gb)
    return Row(section, f"{noun} `{pattern}`", a[0], b[0], status, evidence)


def _difference(kind: str, ga: ArtifactGroup, gb: ArtifactGroup) -> str:
    broken = [f"{side}: {summarize_problems(g.problems)}" for side, g in (("A", ga), ("B", gb)) if g.problems]
    if broken:
        return "broken files -- " + "; ".join(broken)
    if len(ga.artifacts) != len(gb.artifacts):
        return f"{len(ga.artifacts)} vs {len(gb.artifacts)} files"
    if kind == JSON_FILE:
        return "schema differs: " + summarize_problems(schema_differences(ga.merged_schema() or {"type": []},
                                                                          gb.merged_schema() or {"type": []}))
    if kind == CHECKPOINT:
        return f"members {' + '.join(_members(ga))} vs {' + '.join(_members(gb))}"
    sizes = [", ".join(f"{a.size:,}" for a in sorted(g.artifacts, key=lambda a: a.path)) for g in (ga, gb)]
    return f"sizes differ: {sizes[0]} vs {sizes[1]} bytes"


def artifact_rows(a: RunArtifacts, b: RunArtifacts) -> list[Row]:
    """One row per pattern either run wrote, charts first, then JSON, checkpoint sets and the rest."""
    order = {CHART: 0, JSON_FILE: 1, CHECKPOINT: 2}
    patterns = sorted(set(a.groups) | set(b.groups),
                      key=lambda p: (order.get((a.groups.get(p) or b.groups[p]).kind, 3), p))
    rows = [_group_row(p, a.groups.get(p), b.groups.get(p)) for p in patterns]
    if not patterns:
        rows.append(Row(EXPORT, "files written", "none", "none", presence_status(None, None),
                        f"nothing but parity's own files under A: {', '.join(a.roots)}; B: {', '.join(b.roots)}"))
    return rows


def metrics_files(run: RunArtifacts) -> list[ArtifactGroup]:
    return [g for g in run.of_kind(JSON_FILE) if g.pattern.endswith(".jsonl") or _METRICS_FILE.search(Path(g.pattern).name)]


def logged_metrics(run: RunArtifacts) -> dict[str, tuple[str, list[Any]]]:
    """Metric key -> (the file pattern it is logged in, its values) over every record of the metrics files."""
    found: dict[str, tuple[str, list[Any]]] = {}
    for group in metrics_files(run):
        for artifact in group.valid:
            for record in artifact.detail.get("records", []):
                for key, value in record.items():
                    found.setdefault(key, (group.pattern, []))[1].append(value)
    return found


def metric_rows(a: RunArtifacts, b: RunArtifacts) -> list[Row]:
    """One row per metric key logged in a metrics file (records of metrics_history.json, a JSON-lines log)."""
    ma, mb = logged_metrics(a), logged_metrics(b)
    rows = []
    for key in sorted(set(ma) | set(mb)):
        cells = [_metric_cell(m.get(key)) for m in (ma, mb)]
        files = sorted({m[key][0] for m in (ma, mb) if key in m})
        rows.append(value_row(VIZ, f"metric `{key}`", cells[0], cells[1], f"keys of the records in {', '.join(files)}",
                              same=cells[0] is not None and cells[1] is not None
                              and cells[0].split(" ")[0] == cells[1].split(" ")[0]))
    if not ma and not mb:
        rows.append(value_row(VIZ, "metrics logged", None, None, "no metrics JSON/JSON-lines file found on either side",
                              missing="no metrics file"))
    return rows


def _metric_cell(entry: tuple[str, list[Any]] | None) -> str | None:
    if entry is None:
        return None
    values = entry[1]
    kinds = sorted({type(v).__name__ for v in values})
    return f"{'/'.join(kinds)} ({len(values)} records)"


def logged_numbers(run: RunArtifacts, key_pattern: re.Pattern) -> tuple[str, list[float]] | None:
    """(metric key, its numeric values) of the first logged metric whose key matches, or None."""
    for key, (_, values) in sorted(logged_metrics(run).items()):
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if key_pattern.search(key) and numbers:
            return key, numbers
    return None


def throughput_of(run: RunArtifacts) -> tuple[str, float] | None:
    """(metric key, median value) of a logged throughput metric, or None."""
    found = logged_numbers(run, THROUGHPUT_KEY)
    return (found[0], statistics.median(found[1])) if found else None


def tokens_per_step_row(a: RunArtifacts, b: RunArtifacts) -> Row:
    """Tokens per step as the trainers log them (the trace records them only for a DataLoader's integer targets)."""
    shown, keys = [], []
    for run in (a, b):
        found = logged_numbers(run, TOKENS_KEY)
        if found is None:
            shown.append(None)
            keys.append(None)
            continue
        values = found[1]
        spread = f"{min(values):,g}-{max(values):,g}, " if min(values) != max(values) else ""
        shown.append(f"{spread}median {statistics.median(values):,g} (`{found[0]}`)")
        keys.append(sorted(values))
    return value_row(DATA, "tokens per step (logged)", keys[0], keys[1],
                     "the per-step token count each trainer logs in its metrics file; identical only where every "
                     "step's count is", shown_a=shown[0], shown_b=shown[1], missing="not logged")
