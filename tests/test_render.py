"""Report output: atomic file writes, "-" for stdout, and strict JSON without bare NaN."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest

from parity.report import render
from parity.report.render import emit, to_json_text, write_atomic


def _strict_loads(text: str):
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} in JSON output"))


@pytest.mark.parametrize("content", ["report\n", b"\x00\xffbinary"], ids=["text", "bytes"])
def test_write_atomic_writes_and_leaves_no_temp_file(tmp_path: Path, content: str | bytes) -> None:
    target = tmp_path / "out" / "report.md"
    write_atomic(target, content)
    assert target.read_bytes() == (content.encode() if isinstance(content, str) else content)
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]


def test_write_atomic_replaces_existing_content(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_write_atomic_failing_midway_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def broken_replace(src, dst):
        assert Path(src).exists() and Path(src).read_text() == "new", "the temp file is complete before the rename"
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"], "the temp file must be removed"


def test_write_atomic_interrupted_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    real_fdopen = os.fdopen

    class _Half:
        def __init__(self, fh):
            self._fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

        def write(self, data):
            self._fh.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(render.os, "fdopen", lambda fd, mode: _Half(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "0123456789")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("outfile", ["-", None])
def test_emit_to_stdout(capsys: pytest.CaptureFixture, tmp_path: Path, outfile, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    emit("verdict: IDENTICAL", outfile)
    assert capsys.readouterr().out == "verdict: IDENTICAL\n"
    emit("already ends\n", outfile)
    assert capsys.readouterr().out == "already ends\n"
    assert list(tmp_path.iterdir()) == [], "'-' is stdout, never a file named '-'"


def test_emit_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    emit("text", tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text() == "text"
    assert capsys.readouterr().out == ""


def test_to_json_text_turns_non_finite_floats_into_strings() -> None:
    data = {"max_rel": math.inf, "min": -math.inf, "loss": math.nan, "ok": 1.5,
            "nested": [{"x": (math.nan, 2.0)}, [math.inf]], "n": 3, "s": "nan"}
    text = to_json_text(data)
    for token in ("NaN", "Infinity"):
        assert token not in text
    assert _strict_loads(text) == {"max_rel": "inf", "min": "-inf", "loss": "nan", "ok": 1.5,
                                   "nested": [{"x": ["nan", 2.0]}, ["inf"]], "n": 3, "s": "nan"}
    assert text.endswith("\n")


def test_to_json_text_handles_numpy_scalars_and_paths() -> None:
    np = pytest.importorskip("numpy")
    parsed = _strict_loads(to_json_text({"a": np.float64("nan"), "b": np.float32("inf"), "p": Path("x/y")}))
    assert parsed["a"] == "nan"
    assert parsed["b"] == "inf"
    assert parsed["p"] == "x/y"


def test_to_json_text_keeps_key_order() -> None:
    assert list(_strict_loads(to_json_text({"verdict": 1, "checks": 2, "a": 3}))) == ["verdict", "checks", "a"]


def test_write_atomic_gives_a_new_file_the_umask_mode_and_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.md"
        write_atomic(fresh, "new")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640, "mkstemp's 0600 leaked into the report"
        kept = tmp_path / "kept.md"
        kept.write_text("old")
        kept.chmod(0o604)
        write_atomic(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o604 and kept.read_text() == "new"
    finally:
        os.umask(old_umask)
