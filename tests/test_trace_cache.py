"""The columnar trace cache: used when it matches the trace, rebuilt silently when it does not, never needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parity.checks.compare import compare_traces
from parity.exceptions import TraceError
from parity.trace import cache, reader, schema
from parity.trace.lazy import LazySteps
from parity.trace.reader import load_trace
from parity.trace.writer import TraceWriter

STEPS = 40


def _step(i: int, loss_bits: str = "3f800000") -> dict:
    return {"type": schema.STEP, "step": i, "events": ["zero_grad", "forward", "backward", "optimizer.step"],
            "losses": [{"bits": loss_bits, "dtype": "float32", "value": 1.0}], "groups": [{"lr": 0.1 / (i + 1)}],
            "grad_norm": {"bits": "3f000000", "dtype": "float32", "value": 0.5, "source": "parity"},
            "params": f"{i:016x}", "optim_state": f"{2 * i:016x}", "batch": [f"Net:{i:016x}"]}


def _write(directory: Path, steps: int = STEPS, end: bool = True, diverge_at: int | None = None) -> Path:
    writer = TraceWriter(directory, 0)
    writer.write({"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0,
                  "level": "full", "deterministic": False, "meta": {"argv": ["train.py"]}})
    writer.write({"type": schema.META, "key": "argparse", "value": {"lr": 0.1}})
    for i in range(steps):
        writer.write(_step(i, "3f800001" if diverge_at is not None and i >= diverge_at else "3f800000"))
    if end:
        writer.write({"type": schema.END, "status": schema.END_OK, "steps": steps})
    writer.close()
    return writer.path


@pytest.fixture(autouse=True)
def _cache_every_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Cache the small traces of these tests too, and keep the user cache directory inside tmp_path."""
    monkeypatch.setattr(cache, "CACHE_MIN_BYTES", 0)
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def _cache_file(trace: Path) -> Path:
    return cache.cache_locations(trace)[0]


def _no_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path):
        raise AssertionError(f"{path} was decoded again although its cache matches")
    monkeypatch.setattr(reader, "_build_columns", refuse)


def test_the_first_read_writes_the_cache_and_the_second_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "a")
    first = load_trace(path)
    assert isinstance(first.steps, LazySteps) and _cache_file(path).is_file()
    assert _cache_file(path).stat().st_mode & 0o777 == path.stat().st_mode & 0o666  # readable like the trace
    _no_rebuild(monkeypatch)
    again = load_trace(path)
    assert len(again.steps) == STEPS and again.steps[3] == first.steps[3] == _step(3)
    assert again.meta == {"argparse": {"lr": 0.1}} and again.complete


def test_results_are_identical_with_and_without_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _write(tmp_path / "a"), _write(tmp_path / "b", diverge_at=17)
    cached = compare_traces(load_trace(a), load_trace(b)).to_json()
    warm = compare_traces(load_trace(a), load_trace(b)).to_json()
    monkeypatch.setenv(cache.CACHE_ENV, cache.CACHE_OFF)
    plain_a, plain_b = load_trace(a), load_trace(b)
    assert isinstance(plain_a.steps, list)
    assert cached == warm == compare_traces(plain_a, plain_b).to_json()
    assert cached["first_divergence"]["step"] == 17


def test_a_trace_appended_to_is_read_again(tmp_path: Path) -> None:
    path = _write(tmp_path / "a", end=False)
    assert len(load_trace(path).steps) == STEPS
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"status":"ok","steps":40,"type":"end"}\n')
    assert load_trace(path).complete


def test_a_trace_changed_in_place_with_its_size_and_time_kept_is_read_again(tmp_path: Path) -> None:
    path = _write(tmp_path / "a")
    assert load_trace(path).steps[5]["params"] == f"{5:016x}"
    st = path.stat()
    text = path.read_text().replace(f'"params":"{5:016x}"', f'"params":"{9:016x}"')
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert load_trace(path).steps[5]["params"] == f"{9:016x}"


def test_a_killed_runs_half_written_last_line_still_compares(tmp_path: Path) -> None:
    path = _write(tmp_path / "a", end=False)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"events":["zero_grad"],"step":40,"ty')
    trace = load_trace(path)
    assert isinstance(trace.steps, LazySteps) and len(trace.steps) == STEPS and not trace.complete
    other = load_trace(_write(tmp_path / "b"))
    comparison = compare_traces(other, trace)
    assert comparison.finding("step_order").evidence["steps"] == {"baseline": STEPS, "candidate": STEPS}
    assert comparison.finding("loss").status == schema.IDENTICAL


@pytest.mark.parametrize("damage", [
    lambda data: data[: len(data) // 2],                                   # cut short
    lambda data: data[:-9] + bytes(b ^ 0xFF for b in data[-9:]),           # flipped payload bytes
    lambda data: b"not a cache at all",
    lambda data: data.replace(b'"layout":1', b'"layout":0', 1),             # another layout
])
def test_a_corrupt_or_foreign_cache_is_rebuilt_silently(tmp_path: Path, damage) -> None:
    path = _write(tmp_path / "a", diverge_at=3)
    expected = load_trace(path).steps.columns.l_bits.tolist()
    target = _cache_file(path)
    target.write_bytes(damage(target.read_bytes()))
    trace = load_trace(path)
    assert trace.steps.columns.l_bits.tolist() == expected and trace.steps[3] == _step(3, "3f800001")
    assert cache.read_cache(path, cache.trace_key(path, path.stat())) is not None, "the rebuilt cache was stored"


def test_a_read_only_run_directory_keeps_its_cache_elsewhere_or_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "a")
    readonly = {path.parent}
    real_mkstemp = cache.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # what a read-only directory (or a root-owned one) answers
        if Path(dir) in readonly:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(cache.tempfile, "mkstemp", mkstemp)
    assert len(load_trace(path).steps) == STEPS
    assert not _cache_file(path).exists() and cache.cache_locations(path)[1].is_file()
    readonly.add(cache.cache_locations(path)[1].parent)
    cache.cache_locations(path)[1].unlink()
    assert len(load_trace(path).steps) == STEPS
    assert not cache.cache_locations(path)[1].exists()


def test_a_cache_directory_from_the_environment_holds_every_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "caches"))
    path = _write(tmp_path / "a")
    load_trace(path)
    assert not (path.parent / f".{path.name}.columns").exists()
    assert len(list((tmp_path / "caches").glob("*.columns"))) == 1


@pytest.mark.parametrize("bad, message", [
    (b'{"type":"step","step":0,"events":[],"params":5}\n', "wrong type: step.params"),
    (b'{"type":"step","step":3,"events":[]}\n', "out of order"),
    (b"{not json}\n", "not valid JSON"),
    (b'{"type":"step","step":0,"events":["\xff"]}\n', "cannot read trace"),
])
def test_a_bad_trace_is_refused_with_the_same_message_as_without_the_cache(tmp_path: Path, bad: bytes, message: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "a", steps=0, end=False)
    with open(path, "ab") as fh:
        fh.write(bad)
    with pytest.raises(TraceError, match=message) as cached:
        load_trace(path)
    monkeypatch.setenv(cache.CACHE_ENV, cache.CACHE_OFF)
    with pytest.raises(TraceError) as plain:
        load_trace(path)
    assert str(cached.value) == str(plain.value)
    assert not _cache_file(path).exists()


def test_a_finished_recording_builds_the_cache_of_its_large_traces(tmp_path, monkeypatch):
    """The first compare of a long run must not pay the columnar build: `parity record` does it at close."""
    import sys

    from parity.capture import launch
    from parity.trace import cache

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from compare_speed import synthesise

    trace = synthesise(tmp_path / "run", 3000, None)
    run = trace.parent
    assert trace.stat().st_size >= cache.CACHE_MIN_BYTES
    monkeypatch.delenv("PARITY_TRACE_CACHE", raising=False)
    launch._build_trace_caches(run)
    assert any(p.name.endswith(".columns") for p in run.iterdir())
