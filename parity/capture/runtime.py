"""Start and stop capture in this process: the Python API (`parity.record`) and the injected bootstrap."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterator

from parity.capture import config as cfg
from parity.capture import digest, metadata, seeding
from parity.capture.patches import TorchPatches
from parity.capture.recorder import Recorder, describe_exception
from parity.exceptions import ConfigError
from parity.trace import schema


class Capture:
    """One active capture: a recorder plus the patches feeding it. At most one per process."""

    def __init__(self, recorder: Recorder, patches: TorchPatches, restore: list[Any] | None = None) -> None:
        self.recorder = recorder
        self.patches = patches
        self.deep: Any = None
        """The deep capture (parity.capture.deep) when PARITY_DEEP_STEP asks for one."""
        self.restore: list[Any] = restore or []
        """What stop() puts back once capture ends (process-wide settings that starting changed)."""

    def stop(self, exc: BaseException | None = None, *, interrupted: bool = False) -> None:
        global _active
        if interrupted or isinstance(exc, KeyboardInterrupt):
            status = schema.END_INTERRUPTED
        else:
            status = schema.END_OK if exc is None else schema.END_EXCEPTION
        if self.deep is not None:
            self.deep.close()
        self.recorder.meta("numerics_at_end", metadata.numerics_flags())
        self.recorder.close(status, describe_exception(exc))
        self.patches.uninstall()
        while self.restore:
            self.restore.pop()()
        if _active is self:
            _active = None


_active: Capture | None = None


def start_capture(directory: str | os.PathLike, config: cfg.CaptureConfig | None = None, *,
                  seed: int | None = None, deterministic: bool = False,
                  skip_loads: frozenset[str] = frozenset()) -> Capture:
    """Instrument torch in this process and write the trace under `directory`."""
    global _active
    if _active is not None:
        raise ConfigError("parity capture is already active in this process; stop it before starting another")
    config = config or cfg.CaptureConfig()
    recorder = Recorder(Path(directory), config, {"meta": metadata.run_metadata(), "seed": seed,
                                                  "deterministic": deterministic, "skip_loads": sorted(skip_loads),
                                                  "digest": digest.DIGEST_VERSION})
    if seed is not None:
        seeding.seed_everything(seed)
    restore = []
    if deterministic:
        ops: list[str] = []

        def nondeterministic(op: str) -> None:
            if op not in ops:
                ops.append(op)
                recorder.meta("nondeterministic_ops", ops, open_trace=True)
        restore.append(seeding.enable_deterministic(nondeterministic))
    patches = TorchPatches(recorder, skip_loads).install()
    _active = Capture(recorder, patches, restore)
    return _active


@contextlib.contextmanager
def record(directory: str | os.PathLike, level: str = schema.LEVEL_FULL, *, seed: int | None = None,
           deterministic: bool = False) -> Iterator[Capture]:
    """Record every optimizer step run inside the block: ``with parity.record("runs/a"): train()``."""
    capture = start_capture(directory, cfg.CaptureConfig.parse(level), seed=seed, deterministic=deterministic)
    try:
        yield capture
    except BaseException as exc:
        capture.stop(exc)
        raise
    capture.stop()


def start_from_environment() -> None:
    """Bootstrap for injected processes: read the PARITY_* variables set by `parity record`."""
    directory = os.environ.get(cfg.ENV_DIR)
    if not directory:
        return
    seed = os.environ.get(cfg.ENV_SEED)
    skip = frozenset(k for k in os.environ.get(cfg.ENV_SKIP_LOADS, "").split(",") if k)
    strict = os.environ.get(cfg.ENV_STRICT_DETERMINISTIC) == "1"
    capture = start_capture(directory, cfg.CaptureConfig.from_env(), seed=int(seed) if seed else None,
                            deterministic=os.environ.get(cfg.ENV_DETERMINISTIC) == "1" or strict, skip_loads=skip)
    if strict:
        seeding.enable_strict_deterministic()
    if os.environ.get(cfg.ENV_DEEP_STEP):
        from parity.capture import deep

        capture.deep = deep.from_environment(capture.recorder)
    failure: list[BaseException] = []
    signals = _turn_signals_into_exits()
    previous_hook = sys.excepthook

    def excepthook(kind, value, tb):  # type: ignore[no-untyped-def]
        failure.append(value)
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    atexit.register(lambda: capture.stop(failure[0] if failure else None, interrupted=bool(signals)))


def _turn_signals_into_exits() -> list[int]:
    """Make SIGTERM and SIGINT unwind the trainer, so atexit closes its trace as interrupted.

    Under SIG_DFL a SIGTERM kills the process before atexit runs, leaving a trace with no end record.
    Only default dispositions are replaced: this runs before the trainer's code (from sitecustomize),
    so a trainer that installs its own handler later still wins, and an inherited SIG_IGN stays.
    Returns the list the handlers append the received signal numbers to.
    """
    received: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        received.append(signum)
        raise SystemExit(128 + signum)

    def on_sigint(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    for signum, default, handler in ((signal.SIGTERM, signal.SIG_DFL, on_sigterm),
                                     (signal.SIGINT, signal.default_int_handler, on_sigint)):
        try:
            if signal.getsignal(signum) is default:
                signal.signal(signum, handler)
        except ValueError:  # not the main thread: signals cannot be handled here
            break
    return received
