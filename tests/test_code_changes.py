"""Code provenance: source files and functions that differ between two runs, matched across forks."""

from __future__ import annotations

from pathlib import Path

from parity.checks.code import code_changes
from parity.trace import schema
from parity.trace.reader import Trace


def _trace(files: dict) -> Trace:
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header,
                 meta={schema.META_SOURCES: {"root": ".", "git": None, "files": files}})


def _file(module: str, sha: str, **functions: str) -> dict:
    return {"module": module, "sha": sha, "functions": functions}


BASE = {"train.py": _file("__main__", "a", main="m1"),
        "pkg/engine.py": _file("pkg.engine", "b", train_one_epoch="t1", evaluate="e1"),
        "pkg/data.py": _file("pkg.data", "c", build_vocab="v1")}


def test_identical_sources_have_no_changes() -> None:
    out = code_changes(_trace(BASE), _trace(BASE))
    assert out.recorded and not out.changed


def test_changed_functions_are_named_per_file() -> None:
    cand = {**BASE, "pkg/engine.py": _file("pkg.engine", "b2", train_one_epoch="t2", evaluate="e1", warmup="w")}
    out = code_changes(_trace(BASE), _trace(cand))
    [change] = out.files
    assert (change.baseline, change.changed, change.added) == ("pkg/engine.py", ["train_one_epoch"], ["warmup"])
    assert change.describe() == "pkg/engine.py: train_one_epoch changed; warmup added"


def test_a_fork_in_another_directory_is_matched_by_module_then_file_name() -> None:
    fork = {"variants/fork.py": _file("__main__", "z", main="m2"),
            "pkg/engine.py": BASE["pkg/engine.py"], "other/data.py": _file("other.data", "c2", build_vocab="v2")}
    out = code_changes(_trace(BASE), _trace(fork))
    labels = sorted(f.describe() for f in out.files)
    assert labels == ["pkg/data.py -> other/data.py: build_vocab changed", "train.py -> variants/fork.py: main changed"]


def test_a_side_without_sources_is_not_recorded() -> None:
    old = _trace(BASE)
    old.meta.clear()
    assert not code_changes(old, _trace(BASE)).recorded
