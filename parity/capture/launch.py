"""Run a training command in a child process with capture injected into every Python process it starts."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import parity
from parity.capture import config as cfg
from parity.capture.progress import RecordingProgress
from parity.exceptions import BaselineError, ConfigError
from parity.trace import schema
from parity.trace.writer import encode_record

_INJECT_DIR = Path(__file__).resolve().parent / "_inject"
#: Written next to the traces: how the run was made, so reports can print the command that reproduces it.
RUN_FILE = "run.json"
#: Inside a run directory: flock-ed by the `parity record` writing there for as long as it runs (the
#: kernel drops the lock when that process dies, so a killed recording never blocks the next one).
LOCK_FILE = ".parity-record.lock"
#: Inside a run directory: the previous run's files while `force` records their replacement.
PREVIOUS_DIR = ".parity-previous"
#: Inside a run directory: the files of a `force` attempt that failed (the previous run was put back).
FAILED_DIR = ".parity-failed"
#: How long a trainer may take to exit after a forwarded SIGTERM/SIGINT before its group is killed.
SIGNAL_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.2


@dataclass
class RecordResult:
    """What a recorded command left behind."""

    directory: Path
    returncode: int
    seconds: float
    log: Path | None
    interrupted_by: int | None = None
    """The signal (SIGTERM or SIGINT) that `parity record` received and forwarded to the trainer."""
    failed_attempt: Path | None = None
    """Set when a `force` replacement failed: the previous run is back in place, this attempt's files are here."""


def _child_env(out: Path, seed: int | None, deterministic: bool, level: str, skip_loads: Sequence[str],
               extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    package_root = str(Path(parity.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_INJECT_DIR), package_root, env.get("PYTHONPATH", "")) if p)
    env[cfg.ENV_DIR] = str(out.resolve())
    env[cfg.ENV_LEVEL] = level
    env.pop(cfg.ENV_SEED, None)
    if seed is not None:
        env[cfg.ENV_SEED] = str(seed)
        env["PYTHONHASHSEED"] = str(seed)  # only effective if set before the interpreter starts
    if deterministic:
        env[cfg.ENV_DETERMINISTIC] = "1"
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if skip_loads:
        env[cfg.ENV_SKIP_LOADS] = ",".join(skip_loads)
    return env


def prepare_run_dir(out: Path, force: bool) -> Path | None:
    """Create-only: refuse to mix a new run into an old one; with `force`, move the old run aside.

    Returns the directory holding the old run's files until `_settle_previous` deletes or restores
    them, or None when there was no recorded run to keep. Call it holding the directory's lock.
    """
    if (out / PREVIOUS_DIR).is_dir():
        # A recording killed outright (SIGKILL) while replacing this run: what it left is partial.
        _settle_previous(out, out / PREVIOUS_DIR, succeeded=False)
    existing = list(out.glob(schema.TRACE_GLOB))
    if existing and not force:
        raise ConfigError(f"{out}: already holds a recorded run ({existing[0].name}); pass --force to replace it "
                          "or choose another --out")
    if not existing:
        (out / RUN_FILE).unlink(missing_ok=True)  # provenance of a run that recorded nothing: nothing to keep
        return None
    previous = out / PREVIOUS_DIR
    previous.mkdir()
    for f in _run_files(out):
        f.rename(previous / f.name)
    return previous


def _run_files(out: Path) -> list[Path]:
    """The files parity writes into a run directory (the trainer's own outputs are not among them)."""
    return [f for f in [*out.glob(schema.TRACE_GLOB), out / RUN_FILE, out / "output.log"] if f.is_file()]


def _settle_previous(out: Path, previous: Path | None, succeeded: bool) -> Path | None:
    """Delete the old run once the new one produced a trace; otherwise put it back.

    A failed attempt's own files go to FAILED_DIR (returned) rather than being deleted: its output
    and partial trace are what tells the user why it failed. A success clears an older FAILED_DIR.
    """
    failed = out / FAILED_DIR
    if succeeded:
        shutil.rmtree(failed, ignore_errors=True)
        if previous is not None:
            shutil.rmtree(previous)
        return None
    if previous is None:
        return None
    shutil.rmtree(failed, ignore_errors=True)
    failed.mkdir()
    for f in _run_files(out):
        f.rename(failed / f.name)
    for f in previous.iterdir():
        f.rename(out / f.name)
    previous.rmdir()
    return failed


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold the run directory's lock, or refuse at once naming the process that holds it."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # "a+": opening must not truncate the pid written by a holder we are about to be refused by.
    handle = open(out / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(f"{out}: another parity record (pid {holder}) is recording here; "
                              "wait for it to finish or choose another --out") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):  # the whole group is gone already
        pass


@contextlib.contextmanager
def _forwarding_signals(child: list[subprocess.Popen]) -> Iterator[list[int] | None]:
    """While the block runs, pass SIGTERM/SIGINT on to the child's process group instead of dying.

    Yields the list of signals received, or None where signals cannot be handled (not the main
    thread, e.g. `parity ablate` workers): the child then stays in our process group, so a Ctrl-C at
    the terminal still reaches it. A second signal kills the group outright.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if child:
            _signal_group(child[0], signal.SIGKILL if len(received) > 1 else signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _wait(proc: subprocess.Popen, timeout: float | None, received: list[int] | None,
          on_poll: Callable[[], None] | None = None) -> int:
    """Wait for the child; after a forwarded signal, give it SIGNAL_GRACE_SECONDS, then kill its group."""
    started = time.monotonic()
    signalled_at: float | None = None
    while True:
        try:
            returncode = proc.wait(timeout=_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if on_poll is not None:
            on_poll()
        now = time.monotonic()
        if received and signalled_at is None:
            signalled_at = now
        if signalled_at is not None and now - signalled_at > SIGNAL_GRACE_SECONDS:
            _signal_group(proc, signal.SIGKILL)
            returncode = proc.wait()
            break
        if timeout is not None and now - started > timeout:
            _kill(proc, received)
            raise subprocess.TimeoutExpired(proc.args, timeout)
    if received:
        _signal_group(proc, signal.SIGKILL)  # stragglers of an interrupted run (workers, torchrun ranks)
    return returncode


def _kill(proc: subprocess.Popen, received: list[int] | None) -> None:
    if received is None:  # the child shares our process group: kill only it
        proc.kill()
    else:
        _signal_group(proc, signal.SIGKILL)
    proc.wait()


def record_command(command: Sequence[str], out: str | os.PathLike, *, seed: int | None = None,
                   deterministic: bool = False, level: str = schema.LEVEL_FULL, cwd: str | os.PathLike | None = None,
                   env: dict[str, str] | None = None, skip_loads: Sequence[str] = (), force: bool = False,
                   log_output: bool = False, timeout: float | None = None, reraise_signal: bool = True) -> RecordResult:
    """Run `command`, recording every Python process it starts, one trace per rank, under `out`.

    A SIGTERM/SIGINT received meanwhile is passed on to the trainer; once its trace and run.json are
    written, `reraise_signal` delivers it again to this process's own handler, so a host (pytest, a
    notebook, `parity report`) stops as it would have without parity. `parity record` itself passes
    False and exits 143/130 after saying what was kept."""
    if not command:
        raise ConfigError("no command to record: put it after `--`, e.g. parity record --out runs/a -- python train.py")
    cfg.CaptureConfig.parse(level)
    cfg.step_writer_from_env({**os.environ, **(env or {})})  # checked here: in the trainer it would only warn
    out = Path(out)
    with _locked(out):
        previous = prepare_run_dir(out, force)
        succeeded = False
        try:
            result = _run_and_describe(command, out, seed=seed, deterministic=deterministic, level=level, cwd=cwd,
                                       env=env, skip_loads=skip_loads, log_output=log_output, timeout=timeout)
            succeeded = (result.returncode == 0 and result.interrupted_by is None
                         and any(out.glob(schema.TRACE_GLOB)))
        finally:
            failed = _settle_previous(out, previous, succeeded)
    if failed is not None:
        result.failed_attempt = failed
        result.log = failed / result.log.name if result.log else None
    elif succeeded:
        _build_trace_caches(out)
    if reraise_signal and result.interrupted_by is not None:
        signal.raise_signal(result.interrupted_by)
    return result


def _build_trace_caches(out: Path) -> None:
    """Read each finished trace once, so that its columnar cache (parity.trace.cache; large traces only)
    is built now, at the end of a long recording, rather than by the first compare."""
    from parity.exceptions import TraceError
    from parity.trace import cache
    from parity.trace.reader import load_trace

    for path in sorted(out.glob(schema.TRACE_GLOB)):
        try:
            if cache.cache_enabled() and path.stat().st_size >= cache.CACHE_MIN_BYTES:
                load_trace(path)
        except (TraceError, OSError):  # the compare that reads it will say what is wrong
            continue


def _run_and_describe(command: Sequence[str], out: Path, *, seed: int | None, deterministic: bool, level: str,
                      cwd: str | os.PathLike | None, env: dict[str, str] | None, skip_loads: Sequence[str],
                      log_output: bool, timeout: float | None) -> RecordResult:
    """Run the command with signals forwarded to it, then write run.json beside its traces."""
    child_env = _child_env(out, seed, deterministic, level, skip_loads, env)
    log = out / "output.log" if log_output else None
    started = time.perf_counter()
    child: list[subprocess.Popen] = []
    try:
        with (open(log, "w") if log else open(os.devnull, "w")) as sink, _forwarding_signals(child) as received:
            stream = sink if log else None
            # Its own session when we forward signals: a signal meant for the trainer then reaches every
            # process it started (torchrun ranks, workers) and never parity itself a second time.
            proc = subprocess.Popen(list(command), cwd=cwd, env=child_env, stdout=stream,
                                    stderr=subprocess.STDOUT if log else None, start_new_session=received is not None)
            child.append(proc)
            if received:  # arrived while the child was starting
                _signal_group(proc, received[0])
            # With its output in a log, the trainer is silent: say how far it got now and then.
            progress = RecordingProgress(out) if log else None
            _wait(proc, timeout, received, progress.tick if progress else None)
    except FileNotFoundError:
        raise ConfigError(f"cannot run {command[0]!r}: no such program (check the command after `--`)") from None
    except subprocess.TimeoutExpired:
        raise BaselineError(f"{shlex.join(command)}: still running after {timeout:.0f} s; the partial trace is in {out}") from None
    seconds = time.perf_counter() - started
    interrupted_by = received[0] if received else None
    # A report's Reproduce block must also set the numerics variables the trainer inherited from this
    # shell (an exported OMP_NUM_THREADS changes CPU results); parity sets PARITY_* and, with a seed,
    # PYTHONHASHSEED itself.
    inherited = {k: os.environ[k] for k in cfg.NUMERICS_ENV if k in os.environ and k not in (env or {})
                 and not k.startswith("PARITY_") and not (k == "PYTHONHASHSEED" and seed is not None)}
    provenance = {"command": list(command), "cwd": str(Path(cwd or ".").resolve()), "out": str(out.resolve()),
                  "seed": seed, "deterministic": deterministic, "level": level, "skip_loads": list(skip_loads),
                  "env": env or {}, "inherited_env": inherited, "returncode": proc.returncode,
                  "seconds": round(seconds, 3), "python": sys.executable}
    if interrupted_by is not None:
        provenance["interrupted"] = signal.Signals(interrupted_by).name
    (out / RUN_FILE).write_text(encode_record(provenance) + "\n")
    return RecordResult(out, proc.returncode, seconds, log, interrupted_by=interrupted_by)


def load_provenance(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
