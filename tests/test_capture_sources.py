"""Trainer source files: which modules count, hashes per file and per function, paths and git state."""

from __future__ import annotations

import sys
import time

import pytest

from parity.capture import sources

_CODE = b'''
def helper(x):
    return x + 1


class Engine:
    def train_one_epoch(self):
        def inner():
            return 2
        return inner()
'''


def test_function_hashes_name_methods_and_nested_functions():
    hashes = sources.function_hashes(_CODE)
    assert set(hashes) == {"helper", "Engine.train_one_epoch", "Engine.train_one_epoch.inner"}
    moved = sources.function_hashes(b"\n\n# a comment\n" + _CODE)
    assert moved == hashes  # line numbers are not part of a function's hash
    edited = sources.function_hashes(_CODE.replace(b"x + 1", b"x + 2"))
    assert edited["helper"] != hashes["helper"]
    assert edited["Engine.train_one_epoch"] == hashes["Engine.train_one_epoch"]
    assert sources.function_hashes(b"def broken(:") == {}


def test_collect_sources_lists_trainer_modules_only(tmp_path, monkeypatch):
    package = tmp_path / "mytrainer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "engine.py").write_text(_CODE.decode())
    monkeypatch.syspath_prepend(str(tmp_path))
    import mytrainer.engine  # noqa: F401

    try:
        started = time.perf_counter()
        collected = sources.collect_sources()
    finally:  # a module under tmp_path left imported would move every later common root to "/"
        for name in ("mytrainer.engine", "mytrainer"):
            sys.modules.pop(name, None)
    assert time.perf_counter() - started < 2.0
    files = {entry["module"]: (path, entry) for path, entry in collected["files"].items()}
    assert "mytrainer.engine" in files and __name__ in files
    path, entry = files["mytrainer.engine"]
    assert path.endswith("mytrainer/engine.py") and not path.startswith("/")
    assert entry["functions"] == sources.function_hashes(_CODE) and len(entry["sha"]) == 32
    assert not any(m.startswith(("parity", "torch", "json", "_pytest")) for m in files)


def test_collect_sources_names_the_git_repository():
    collected = sources.collect_sources()
    git_state = collected["git"]
    if git_state is None:
        pytest.skip("the checkout is not a git repository")
    assert set(git_state) == {"root", "commit", "dirty"} and len(git_state["commit"]) == 40
    assert "tests/test_capture_sources.py" in collected["files"]


def test_compiler_generated_modules_are_not_trainer_sources() -> None:
    from parity.capture.sources import _GENERATED

    assert _GENERATED.search("/tmp/torchinductor_root/2q/c2q6z7py2x.py")
    assert _GENERATED.search("/tmp/triton_cache/ab/kernel.py")
    assert not _GENERATED.search("/work/project/trainer/train.py")
