"""What a run wrote besides its trace: files found under its output folders, validated and grouped by kind.

A run directory holds parity's own files (traces, run.json, output.log) and whatever the trainer wrote
there through `{out}`; a trainer may also write into a folder an argparse option names (`--output-dir`,
`--ckpt-dir`). Files are grouped by *pattern*: the path with every run of digits written N
(`training_viz/training_step_N.png`), so that two runs that saved at other steps still line up.

Nothing here raises for a broken file: a truncated JSON, a PNG that is not one, a checkpoint set that
lacks a member each become a `problem` on the artifact, shown as a row of the matrix.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from parity.features.schema import infer_schema, merge_schemas
from parity.trace import schema as trace_schema

# Artifact kinds, in the order the matrix lists them.
CHART, JSON_FILE, CHECKPOINT, TEXT, OTHER = "chart", "json", "checkpoint set", "text", "other"
_TEXT_SUFFIXES = (".txt", ".log", ".md", ".csv", ".tsv", ".yaml", ".yml", ".toml")
_JSON_SUFFIXES = (".json", ".jsonl")
#: A checkpoint file, and the member files that belong with it (`X.bin`, `X.bin.embeddings`, `X.bin.decoder`).
_CHECKPOINT = re.compile(r"^(?P<base>.+\.(?:bin|pt|pth|ckpt|safetensors))(?P<member>\.[A-Za-z_][\w-]*)?$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: parity's own files in a run directory (everything hidden is parity's too: locks, caches, previous runs).
_PARITY_FILES = ("run.json", "output.log")
#: An argparse option naming where the trainer writes (not where it reads data from).
_OUTPUT_OPTION = re.compile(r"(^|_)(out|output|save|ckpt|checkpoint|checkpoints|log|logs|viz|plot|plots|figures?)"
                            r"(_?(dir|directory|path|folder|root))?$", re.IGNORECASE)
_PATH_REPR = re.compile(r"^\w*Path\('(.*)'\)$")
#: Files read per run at most: a trainer pointed at a big folder must not make the matrix read all of it.
MAX_FILES = 5000
#: JSON files larger than this are listed, not parsed.
MAX_JSON_BYTES = 64 << 20
_DIGITS = re.compile(r"\d+")
#: The member name of the main file of a checkpoint set.
MAIN_MEMBER = ""


@dataclass
class Artifact:
    """One file (or one checkpoint set) the run wrote, and what reading it showed."""

    path: str
    """Relative to the output folder it was found in."""
    kind: str
    size: int
    problem: str | None = None
    """"corrupt: why" / "incomplete: ..." where the file cannot be used; None where it reads."""
    detail: dict[str, Any] = field(default_factory=dict)
    """chart: width, height; json: schema, records (for metrics keys), value (parsed); checkpoint set: members
    with their sizes."""


@dataclass
class ArtifactGroup:
    """Every artifact of one pattern (`training_viz/training_step_N.png`) in one run."""

    pattern: str
    kind: str
    artifacts: list[Artifact]

    @property
    def problems(self) -> list[str]:
        return [f"{a.path}: {a.problem}" for a in self.artifacts if a.problem]

    @property
    def valid(self) -> list[Artifact]:
        return [a for a in self.artifacts if not a.problem]

    @property
    def numbers(self) -> list[int]:
        """The last number in each file name (the step it was saved at), sorted."""
        found = [_DIGITS.findall(Path(a.path).name) for a in self.artifacts]
        return sorted(int(n[-1]) for n in found if n)

    def merged_schema(self) -> dict[str, Any] | None:
        schemas = [a.detail["schema"] for a in self.valid if "schema" in a.detail]
        if not schemas:
            return None
        out = schemas[0]
        for s in schemas[1:]:
            out = merge_schemas(out, s)
        return out


@dataclass
class RunArtifacts:
    """What one run wrote: groups by pattern, and the folders searched."""

    roots: list[str]
    """Where files were looked for, as `{out}` (the run directory) or `--option (path)`."""
    groups: dict[str, ArtifactGroup]
    truncated: bool = False
    """More than MAX_FILES files: the rest were not read."""

    def of_kind(self, kind: str) -> list[ArtifactGroup]:
        return [g for g in self.groups.values() if g.kind == kind]


def pattern_of(path: str) -> str:
    return _DIGITS.sub("N", path)


def _path_value(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    match = _PATH_REPR.match(value)
    return match.group(1) if match else value


def _moved(folder: Path, recorded_out: Path | None, run_dir: Path) -> Path:
    """`folder` under the run directory where the run was recorded elsewhere (a copy, parity's run cache)."""
    if recorded_out is not None and recorded_out != run_dir and (folder == recorded_out or recorded_out in folder.parents):
        return run_dir / folder.relative_to(recorded_out)
    return folder


def output_roots(run_dir: Path, argparse_values: dict[str, Any], cwd: Path,
                 recorded_out: Path | None = None) -> list[tuple[str, Path]]:
    """(label, folder) to search: folders the trainer's output options name, then the run directory.

    `recorded_out` is the directory the run was recorded into (run.json `out`): options pointing inside
    it are read inside `run_dir`. An option naming the project itself or a folder above the run
    (`--output-dir .`) is left out: the run directory is searched anyway, and the rest of the project
    is not the run's output."""
    roots: list[tuple[str, Path]] = []
    run_dir = run_dir.resolve()
    for name, value in sorted(argparse_values.items()):
        text = _path_value(value)
        if text is None or not _OUTPUT_OPTION.search(name):
            continue
        folder = _moved((cwd / text).resolve(), recorded_out, run_dir)
        if not folder.is_dir() or folder in run_dir.parents or (folder / "pyproject.toml").exists() \
                or (folder / ".git").exists() or any(folder == r for _, r in roots):
            continue
        roots.append((f"--{name.replace('_', '-')}", folder))
    roots.append(("{out}", run_dir))
    return roots


def _is_parity_file(rel: Path) -> bool:
    return (len(rel.parts) == 1 and (rel.name in _PARITY_FILES or rel.match(trace_schema.TRACE_GLOB))) \
        or any(p.startswith(".") for p in rel.parts)


def _walk(roots: list[tuple[str, Path]]) -> tuple[list[tuple[str, Path]], bool]:
    """(relative path, file) of every file under the roots, each file once (under the first root holding it)."""
    seen: set[Path] = set()
    found: list[tuple[str, Path]] = []
    for _, root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(root)
            if path.resolve() in seen or _is_parity_file(rel):
                continue
            seen.add(path.resolve())
            found.append((rel.as_posix(), path))
            if len(found) >= MAX_FILES:
                return found, True
    return found, False


def _read_png(path: Path) -> tuple[str | None, dict[str, Any]]:
    head = path.read_bytes()[:33]
    if not head:
        return "corrupt: empty file", {}
    if not head.startswith(_PNG_SIGNATURE):
        return f"corrupt: not a PNG (starts with {head[:8]!r})", {}
    if len(head) < 24 or head[12:16] != b"IHDR":
        return "corrupt: PNG header cut short (no IHDR chunk)", {}
    width, height = struct.unpack(">II", head[16:24])
    detail = {"width": width, "height": height}
    try:
        from PIL import Image  # optional: decodes the whole image, which finds truncated data the header hides
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return None, detail
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for broken files
        return f"corrupt: {width}x{height} PNG that does not decode ({exc})", detail
    return None, detail


def _read_json(path: Path) -> tuple[str | None, dict[str, Any]]:
    size = path.stat().st_size
    if size == 0:
        return "corrupt: empty file", {}
    if size > MAX_JSON_BYTES:
        return None, {"not_parsed": f"larger than {MAX_JSON_BYTES >> 20} MiB"}
    text = path.read_text(errors="replace")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                return f"corrupt: line {number} is not JSON ({exc.msg}; truncated?)", {}
        value: Any = records
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"corrupt: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}; truncated?)", {}
    return None, {"schema": infer_schema(value), "records": metric_records(value), "value": value}


def metric_records(value: Any) -> list[dict[str, Any]]:
    """The per-step records a metrics file holds: a list of objects, at the top or under one key (the longest)."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if lists:
            return max(lists, key=len)
    return []


def _kind(path: Path) -> str:
    if path.suffix.lower() == ".png":
        return CHART
    if path.suffix.lower() in _JSON_SUFFIXES:
        return JSON_FILE
    if _CHECKPOINT.match(path.name):
        return CHECKPOINT
    if path.suffix.lower() in _TEXT_SUFFIXES:
        return TEXT
    return OTHER


def _checkpoint_sets(files: Iterable[tuple[str, Path]]) -> list[Artifact]:
    """Checkpoint files grouped into sets: `X.bin` with `X.bin.embeddings`, `X.bin.decoder`, ... beside it."""
    sets: dict[str, dict[str, int]] = {}
    for rel, path in files:
        match = _CHECKPOINT.match(Path(rel).name)
        base = str(Path(rel).parent / match.group("base")) if Path(rel).parent != Path(".") else match.group("base")
        sets.setdefault(base, {})[match.group("member") or MAIN_MEMBER] = path.stat().st_size
    out = []
    for base, members in sorted(sets.items()):
        empty = [m or "(main file)" for m, size in sorted(members.items()) if size == 0]
        problem = f"corrupt: empty {', '.join(empty)}" if empty else None
        if MAIN_MEMBER not in members:
            problem = f"incomplete: {Path(base).name} itself is missing (only {', '.join(sorted(members))})"
        out.append(Artifact(base, CHECKPOINT, sum(members.values()), problem, {"members": members}))
    return out


def mark_incomplete_sets(groups: Iterable[ArtifactGroup], expected: set[str]) -> None:
    """A checkpoint set lacking a member the other sets of its pattern have (on either side) is incomplete."""
    for group in groups:
        for artifact in group.artifacts:
            missing = sorted(expected - set(artifact.detail["members"]))
            if missing and artifact.problem is None:
                artifact.problem = f"incomplete: missing {', '.join(Path(artifact.path).name + m for m in missing)}"


def collect_artifacts(run_dir: Path, argparse_values: dict[str, Any], cwd: Path,
                      recorded_out: Path | None = None) -> RunArtifacts:
    """Every file the run wrote, read and grouped by pattern; broken files carry their problem."""
    roots = output_roots(run_dir, argparse_values, cwd, recorded_out)
    files, truncated = _walk(roots)
    groups: dict[str, ArtifactGroup] = {}
    checkpoints = []
    for rel, path in files:
        kind = _kind(path)
        if kind == CHECKPOINT:
            checkpoints.append((rel, path))
            continue
        reader = {CHART: _read_png, JSON_FILE: _read_json}.get(kind)
        problem, detail = reader(path) if reader else (None, {})
        pattern = pattern_of(rel)
        groups.setdefault(pattern, ArtifactGroup(pattern, kind, [])).artifacts.append(
            Artifact(rel, kind, path.stat().st_size, problem, detail))
    for artifact in _checkpoint_sets(checkpoints):
        pattern = pattern_of(artifact.path)
        groups.setdefault(pattern, ArtifactGroup(pattern, CHECKPOINT, [])).artifacts.append(artifact)
    labels = [label if label == "{out}" else f"{label} ({path})" for label, path in roots]
    return RunArtifacts(labels, groups, truncated)
