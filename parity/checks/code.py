"""Code provenance: which of the trainer's own source files and functions differ between two runs.

Explanatory only: changed code is shown beside the numeric findings ("engine.py: train_one_epoch
changed") but never decides a verdict; the measured channels say whether it changed training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from parity.trace.reader import Trace
from parity.trace.records import TraceMeta
from parity.trace.schema import FILE_FUNCTIONS, FILE_MODULE, FILE_SHA, SRC_FILES, SRC_GIT


@dataclass
class FileChange:
    """One source file that differs, with the functions (by qualified name) that differ in it."""

    baseline: str | None
    candidate: str | None
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.baseline and self.candidate and self.baseline != self.candidate:
            return f"{self.baseline} -> {self.candidate}"
        return self.baseline or self.candidate or "?"

    def describe(self) -> str:
        if self.baseline is None:
            return f"{self.candidate}: only in the candidate"
        if self.candidate is None:
            return f"{self.baseline}: only in the baseline"
        parts = [f"{', '.join(self.changed[:4])} changed"] if self.changed else []
        parts += [f"{', '.join(self.added[:4])} added"] if self.added else []
        parts += [f"{', '.join(self.removed[:4])} removed"] if self.removed else []
        return f"{self.label}: " + ("; ".join(parts) if parts else "module-level code changed")


@dataclass
class CodeChanges:
    """The trainer's source differences; `recorded` is False when a side has no `sources` record."""

    recorded: bool
    files: list[FileChange] = field(default_factory=list)
    git: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.files)

    def to_json(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "git": self.git,
                "files": [{**asdict(f), "summary": f.describe()} for f in self.files]}


def _match(files_a: dict[str, Any], files_b: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """Pair files by path, then by module name, then by file name; the rest are one-sided."""
    pairs = [(p, p) for p in sorted(set(files_a) & set(files_b))]
    left = [p for p in sorted(files_a) if p not in files_b]
    right = [p for p in sorted(files_b) if p not in files_a]
    for key in (lambda p, f: f.get(FILE_MODULE), lambda p, f: PurePosixPath(p).name):
        by_key: dict[Any, list[str]] = {}
        for p in right:
            by_key.setdefault(key(p, files_b[p]), []).append(p)
        still = []
        for p in left:
            options = by_key.get(key(p, files_a[p])) or []
            if len(options) == 1 and options[0] in right:
                pairs.append((p, options[0]))
                right.remove(options[0])
            else:
                still.append(p)
        left = still
    return pairs + [(p, None) for p in left] + [(None, p) for p in right]


def code_changes(baseline: Trace, candidate: Trace) -> CodeChanges:
    sa, sb = TraceMeta.of(baseline).sources, TraceMeta.of(candidate).sources
    if sa is None or sb is None:
        return CodeChanges(recorded=False)
    files_a, files_b = sa[SRC_FILES], sb[SRC_FILES]
    out = CodeChanges(recorded=True, git={"baseline": sa.get(SRC_GIT), "candidate": sb.get(SRC_GIT)})
    for pa, pb in _match(files_a, files_b):
        if pa is None or pb is None:
            out.files.append(FileChange(pa, pb))
            continue
        fa, fb = files_a[pa], files_b[pb]
        if fa.get(FILE_SHA) == fb.get(FILE_SHA):
            continue
        funcs_a, funcs_b = fa.get(FILE_FUNCTIONS) or {}, fb.get(FILE_FUNCTIONS) or {}
        out.files.append(FileChange(pa, pb,
                                    changed=sorted(n for n in set(funcs_a) & set(funcs_b) if funcs_a[n] != funcs_b[n]),
                                    added=sorted(set(funcs_b) - set(funcs_a)),
                                    removed=sorted(set(funcs_a) - set(funcs_b))))
    return out
