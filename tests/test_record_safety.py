"""No run lost or mixed up: `record --force` keeps the old run until the new one works, one recording per directory, signals forwarded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.capture import launch
from parity.exceptions import ConfigError, TraceError
from parity.trace import schema
from parity.trace.reader import load_run
from parity.trace.writer import TraceWriter

from conftest import REPO, TOY

TRAIN = str(TOY / "train.py")
# Not Python: the commands that record nothing need no interpreter start with parity's capture (seconds).
FAILING = ["sh", "-c", "exit 3"]


def _header(rank: int = 0, pid: int = 1) -> dict:
    return {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION,
            "rank": rank, "pid": pid, "seed": 0}


def _step(i: int) -> dict:
    return {"type": schema.STEP, "step": i, "events": [schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_OPT_STEP],
            "losses": [{"bits": "3f800000", "dtype": "float32", "value": 1.0}]}


def _write_trace(directory: Path, rank: int = 0, steps: int = 2, pid: int = 1) -> Path:
    writer = TraceWriter(directory, rank)
    for record in [_header(rank, pid), *(_step(i) for i in range(steps)),
                   {"type": schema.END, "status": schema.END_OK, "steps": steps}]:
        writer.write(record)
    writer.close()
    return writer.path


def _old_run(out: Path) -> dict[str, bytes]:
    """A finished run written by hand: what --force must not lose. Returns its files' bytes."""
    _write_trace(out)
    (out / launch.RUN_FILE).write_text('{"command":["old"],"returncode":0}\n')
    return {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}


def _record(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", "record", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def _start_record(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "parity", "record", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _wait_for(condition, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _steps_on_disk(trace: Path) -> int:
    if not trace.is_file():
        return 0
    return sum(1 for line in trace.read_text().splitlines() if '"type":"step"' in line)


# -- --force --------------------------------------------------------------------------------------

def test_force_with_a_failing_command_keeps_the_old_run(tmp_path):
    out = tmp_path / "runs" / "x"
    out.mkdir(parents=True)
    before = _old_run(out)
    done = _record("--out", str(out), "--force", "--", *FAILING, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "still holds the previous run" in done.stderr and done.stderr.count("\n") == 1
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file() and f.name in before} == before
    assert not (out / launch.PREVIOUS_DIR).exists()
    attempt = json.loads((out / launch.FAILED_DIR / launch.RUN_FILE).read_text())
    assert attempt["returncode"] == 3


def test_force_with_a_command_that_records_nothing_keeps_the_old_run(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    before = _old_run(out)
    result = launch.record_command(["true"], out, force=True)
    assert result.returncode == 0 and result.failed_attempt == out / launch.FAILED_DIR
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_recording_killed_while_replacing_a_run_gets_the_old_run_back(tmp_path):
    """SIGKILL leaves the old run aside and a partial new one in place: the next record restores the old."""
    out = tmp_path / "x"
    aside = out / launch.PREVIOUS_DIR
    aside.mkdir(parents=True)
    before = _old_run(aside)
    _write_trace(out, steps=1, pid=2)
    with pytest.raises(ConfigError, match="already holds a recorded run"):
        launch.record_command(FAILING, out)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not aside.exists()


@pytest.mark.slow
def test_force_with_a_succeeding_command_replaces_the_old_run(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    _old_run(out)
    done = _record("--out", str(out), "--force", "--", sys.executable, TRAIN, "--steps", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = load_run(out)
    assert len(run.primary.steps) == 2 and run.primary.complete
    assert json.loads((out / launch.RUN_FILE).read_text())["command"][-2:] == ["--steps", "2"]
    assert not (out / launch.PREVIOUS_DIR).exists() and not (out / launch.FAILED_DIR).exists()


# -- one recording per directory -------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_record_into_a_busy_directory_is_refused(tmp_path):
    out = tmp_path / "x"
    go = tmp_path / "go"
    # The first trainer waits for `go`, so the second record surely starts while the first holds the lock.
    gated = ["sh", "-c", f'while [ ! -e "{go}" ]; do sleep 0.05; done; exec "{sys.executable}" "{TRAIN}" --steps 2']
    first = _start_record("--out", str(out), "--", *gated, cwd=tmp_path)
    try:
        lock = out / launch.LOCK_FILE
        _wait_for(lambda: lock.is_file() and lock.read_text() == str(first.pid), "the first record's lock")
        second = _record("--out", str(out), "--", sys.executable, TRAIN, "--steps", "2", cwd=tmp_path)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1
        assert f"{out}: another parity record (pid {first.pid}) is recording here" in second.stderr
    finally:
        go.touch()
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert [f.name for f in out.glob(schema.TRACE_GLOB)] == ["trace-rank0.jsonl"]
    assert len(load_run(out).primary.steps) == 2


def test_the_lock_is_released_when_the_recording_ends(tmp_path):
    launch.record_command(FAILING, tmp_path / "x")
    with launch._locked(tmp_path / "x"):
        pass


def test_load_run_refuses_two_traces_for_one_rank(tmp_path):
    first = _write_trace(tmp_path, pid=11)
    second = _write_trace(tmp_path, pid=12)
    assert first.name != second.name
    with pytest.raises(TraceError, match="two traces for rank 0") as error:
        load_run(tmp_path)
    assert first.name in str(error.value) and second.name in str(error.value)


def test_compare_exits_2_on_a_run_with_two_traces_for_one_rank(tmp_path):
    mixed, clean = tmp_path / "mixed", tmp_path / "clean"
    _write_trace(mixed, pid=11)
    second = _write_trace(mixed, pid=12)
    _write_trace(clean)
    done = subprocess.run([sys.executable, "-m", "parity", "compare", str(clean), str(mixed)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and second.name in done.stderr and "Traceback" not in done.stderr


# -- signals ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_record_stops_the_trainer_and_keeps_its_trace(tmp_path, signum, code):
    out = tmp_path / "x"
    trace = out / "trace-rank0.jsonl"
    record = _start_record("--out", str(out), "--", sys.executable, TRAIN, "--steps", "1000000", "--log-every", "1000000",
                           cwd=tmp_path)
    try:
        _wait_for(lambda: _steps_on_disk(trace) >= 2, "the trainer's first steps")
        record.send_signal(signum)
        _, stderr = record.communicate(timeout=60)
    finally:
        if record.poll() is None:
            record.kill()
    assert record.returncode == code, stderr
    assert f"interrupted by {signum.name}" in stderr
    run = load_run(out)
    trainer_pid = run.primary.header["pid"]
    with pytest.raises(ProcessLookupError):  # reaped by parity, not orphaned and still training
        os.kill(trainer_pid, 0)
    assert run.primary.end is not None and run.primary.end["status"] == schema.END_INTERRUPTED
    assert run.primary.ended_how == "interrupted by a signal"
    provenance = json.loads((out / launch.RUN_FILE).read_text())
    assert provenance["interrupted"] == signum.name
    assert provenance["returncode"] != 0


@pytest.mark.slow
def test_a_signal_during_an_in_process_recording_still_stops_the_host(tmp_path):
    """pytest, a notebook or `parity report` recording through the library: the trainer is stopped and its
    files written, then the host gets the signal too, instead of carrying on as if nothing had happened."""
    out = tmp_path / "x"
    host = subprocess.Popen(
        [sys.executable, "-c", "import sys; from parity import session; "
         f"session.record([sys.executable, {TRAIN!r}, '--steps', '1000000', '--log-every', '1000000'], {str(out)!r}); "
         "print('the host carried on')"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _steps_on_disk(out / "trace-rank0.jsonl") >= 2, "the trainer's first steps")
        host.send_signal(signal.SIGTERM)
        stdout, _ = host.communicate(timeout=60)
    finally:
        if host.poll() is None:
            host.kill()
    assert host.returncode == -signal.SIGTERM and "carried on" not in stdout
    assert json.loads((out / launch.RUN_FILE).read_text())["interrupted"] == "SIGTERM"
    assert load_run(out).primary.end[schema.E_STATUS] == schema.END_INTERRUPTED
