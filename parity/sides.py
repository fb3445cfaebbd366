"""Resolve a side spec into a recorded run directory: a trace dir, a pair side, or `git:REV[:PATH]`."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from parity.capture.launch import RecordResult, record_command
from parity.exceptions import BaselineError, ConfigError
from parity.pairs import Side
from parity.trace import schema

GIT_PREFIX = "git:"


def _say(message: str) -> None:
    print(f"parity: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def git_worktree(rev: str, start: Path) -> Iterator[Path]:
    """A detached worktree of `rev`, removed afterwards; the user's checkout is never touched."""
    import git

    try:
        repo = git.Repo(start, search_parent_directories=True)
        repo.commit(rev)
    except git.InvalidGitRepositoryError:
        raise BaselineError(f"git:{rev}: {start} is not inside a git repository") from None
    except (git.BadName, ValueError):
        raise BaselineError(f"git:{rev}: unknown revision (try `git log --oneline` for valid ones)") from None
    tmp = Path(tempfile.mkdtemp(prefix="parity-worktree-"))
    target = tmp / "tree"
    repo.git.worktree("add", "--detach", str(target), rev)
    try:
        yield target
    finally:
        with contextlib.suppress(Exception):
            repo.git.worktree("remove", "--force", str(target))
        shutil.rmtree(tmp, ignore_errors=True)


def record_side(side: Side, out: Path, *, steps: int, device: str, skip_loads: tuple[str, ...] = (),
                cwd: Path | None = None, label: str | None = None) -> RecordResult:
    """Record one pair side; a failing command is a setup error (exit 2) naming its log."""
    command = side.render(steps=steps, device=device, out=out)
    _say(f"recording {label or side.name}: {' '.join(command)}")
    result = record_command(command, out, seed=side.seed, deterministic=side.deterministic, cwd=cwd or side.cwd,
                            env=side.env, skip_loads=skip_loads, force=True, log_output=True)
    if result.returncode != 0:
        tail = result.log.read_text()[-1500:] if result.log else ""
        raise BaselineError(f"{label or side.name}: the command exited with code {result.returncode}; "
                            f"output in {result.log}:\n{tail}")
    if not list(out.glob(schema.TRACE_GLOB)):
        raise BaselineError(f"{label or side.name}: the command ran but recorded no step (no optimizer was created); "
                            f"output in {result.log}")
    _say(f"recorded {label or side.name} in {result.seconds:.1f} s")
    return result


def resolve_side(spec: str, *, fallback: Side | None, out: Path, steps: int | None, device: str,
                 record: Callable[..., RecordResult] = record_side) -> Path:
    """Turn `spec` into a run directory, recording it first when it names something runnable."""
    if spec.startswith(GIT_PREFIX):
        rev, _, sub = spec[len(GIT_PREFIX):].partition(":")
        if fallback is None:
            raise ConfigError(f"{spec}: a git side needs a command; give --pair or --command")
        with git_worktree(rev, fallback.cwd) as tree:
            record(fallback, out, steps=steps or fallback.steps.get(device, 20), device=device,
                   cwd=tree / sub if sub else tree, label=f"{fallback.name} at {rev}")
        return out
    path = Path(spec)
    if path.is_dir() or path.is_file():
        return path
    raise ConfigError(f"{spec}: not a run directory, a trace file or git:REV (record one with `parity record`)")
