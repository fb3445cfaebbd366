"""Resolve a side spec into a recorded run directory: a trace dir, a pair side, or `git:REV[:PATH]`."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import subprocess
import hashlib
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from parity.capture.launch import RUN_FILE, RecordResult, load_provenance, record_command
from parity.exceptions import BaselineError, ConfigError
from parity.pairs import Side
from parity.trace import schema
from parity.trace.writer import encode_record

GIT_PREFIX = "git:"
#: A side spec meaning "record this side from the working tree as it is" (`--candidate .`).
WORKING_TREE = "."


def _say(message: str) -> None:
    print(f"parity: {message}", file=sys.stderr, flush=True)


def _full_sha(rev: str, start: Path) -> tuple[str, Path]:
    """(the commit `rev` names, the repository's root), or a clear error."""
    import git

    try:
        repo = git.Repo(start, search_parent_directories=True)
        return repo.commit(rev).hexsha, Path(repo.working_tree_dir)
    except git.InvalidGitRepositoryError:
        raise BaselineError(f"git:{rev}: {start} is not inside a git repository") from None
    except (git.BadName, ValueError):
        raise BaselineError(f"git:{rev}: unknown revision (try `git log --oneline` for valid ones)") from None


@contextlib.contextmanager
def git_worktree(rev: str, start: Path) -> Iterator[Path]:
    """A detached worktree of `rev`, removed afterwards; the user's checkout is never touched."""
    import git

    commit, root = _full_sha(rev, start)
    repo = git.Repo(root)
    tmp = Path(tempfile.mkdtemp(prefix="parity-worktree-"))
    target = tmp / "tree"
    repo.git.worktree("add", "--detach", str(target), commit)
    try:
        yield target
    finally:
        with contextlib.suppress(Exception):
            repo.git.worktree("remove", "--force", str(target))
        shutil.rmtree(tmp, ignore_errors=True)


_NOT_CODE = ("reports/*", "*.md", "*.png")


def require_clean_worktree(start: Path) -> None:
    """Refuse (exit 2) when tracked files of the checkout at `start` have uncommitted changes: a CI job
    that promises to test a revision must not silently test edits on top of it."""
    import git

    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ConfigError(f"--require-clean: {start} is not inside a git repository") from None
    changed = [line[3:] for line in repo.git.status("--porcelain", "--untracked-files=no").splitlines()]
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise ConfigError(f"--require-clean: {repo.working_tree_dir} has uncommitted changes to tracked files "
                          f"({shown}); commit or stash them, or drop --require-clean")


def code_revision(start: Path) -> str | None:
    """Commit plus a hash of uncommitted changes (tracked diffs, untracked names and sizes); None outside git."""
    try:
        import git

        repo = git.Repo(start, search_parent_directories=True)
        h = hashlib.blake2b(digest_size=8)
        h.update(repo.head.commit.hexsha.encode())
        # Documents and generated reports cannot change a run; leaving them out keeps the cache valid
        # while reports are being regenerated.
        h.update(repo.git.diff("HEAD", "--", ".", *(f":(exclude){p}" for p in _NOT_CODE)).encode())
        for name in sorted(repo.untracked_files):
            if any(fnmatch.fnmatch(name, p) for p in _NOT_CODE):
                continue
            path = Path(repo.working_tree_dir) / name
            h.update(f"{name}:{path.stat().st_size if path.exists() else -1}".encode())
        return h.hexdigest()
    except Exception:  # not a repository, no commit yet, git missing: no caching
        return None


def cache_key(command: list[str], side: Side, cwd: Path, skip_loads: tuple[str, ...], salt: str = "", *,
              revision: str | None = None) -> str | None:
    """The run cache's key; `revision` (a commit) stands for the code at `cwd` where it is not checked out."""
    revision = revision or code_revision(cwd)
    if revision is None:
        return None
    from parity.capture.config import NUMERICS_ENV

    # The shell's numerics variables reach the run too (OMP_NUM_THREADS changes CPU reduction order):
    # a run recorded under other values is another run.
    inherited = sorted((k, os.environ[k]) for k in NUMERICS_ENV if k in os.environ and k not in side.env)
    parts = [command, str(cwd), sorted(side.env.items()), inherited, side.seed, side.deterministic, sorted(skip_loads),
             revision, salt]
    return hashlib.blake2b(repr(parts).encode(), digest_size=10).hexdigest()


def record_side(side: Side, out: Path, *, steps: int, device: str, skip_loads: tuple[str, ...] = (),
                cwd: Path | None = None, label: str | None = None, cache_dir: Path | None = None,
                salt: str = "") -> RecordResult:
    """Record one pair side; a failing command is a setup error (exit 2) naming its log.

    Every recording parity makes for a pair goes through here (report, gate, ablate, resume-check).
    With `cache_dir`, a run with the same command, environment, seed and code revision is reused.
    """
    command = side.render(steps=steps, device=device, out=out)
    key = cache_key([*side.render(steps=steps, device=device, out=Path("OUT")), *side.setup], side, cwd or side.cwd,
                    skip_loads, salt) if cache_dir is not None else None
    if key is not None and (hit := _reuse(cache_dir / key, out, label or side.name)) is not None:
        return hit
    # Pair runs live in directories parity owns: start each from an empty one, so that nothing a
    # previous recording left (a last.bin a trainer would resume from, stale outputs) leaks in.
    shutil.rmtree(out, ignore_errors=True)
    setup_record = None
    if side.setup:
        setup = side.render(steps=steps, device=device, out=out, template=side.setup)
        out.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(setup, cwd=cwd or side.cwd, env={**os.environ, **side.env}, capture_output=True, text=True)
        if done.returncode != 0:
            raise BaselineError(f"{label or side.name}: setup command {' '.join(setup)} exited with code "
                                f"{done.returncode}:\n{done.stderr[-1500:]}")
        setup_record = {"command": setup, "cwd": str(Path(cwd or side.cwd).resolve()), "env": dict(side.env)}
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
    if setup_record is not None:
        _add_to_provenance(out, setup=setup_record)
    _say(f"recorded {label or side.name} in {result.seconds:.1f} s")
    if key is not None:
        _store_in_cache(out, cache_dir / key)
    return result


def _reuse(cached: Path, out: Path, label: str) -> RecordResult | None:
    """The cached run copied to `out`, or None when the cache holds no finished run under that key."""
    if not ((cached / "run.json").exists() and '"returncode":0' in (cached / "run.json").read_text()):
        return None
    _say(f"reusing cached {label} ({cached})")
    _link(cached, out)
    return RecordResult(out, 0, 0.0, cached / "output.log")


def _store_in_cache(out: Path, cached: Path) -> None:
    """Copy a recorded run into the cache so that readers only ever see a complete entry: copied beside it,
    then renamed into place (parallel ablation jobs and test workers record the same side at once)."""
    staging = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(out, staging)
    try:
        if cached.exists():
            shutil.rmtree(cached, ignore_errors=True)
        os.rename(staging, cached)
    except OSError:  # another process stored the same run first: theirs stands
        shutil.rmtree(staging, ignore_errors=True)


def _add_to_provenance(out: Path, **fields: object) -> None:
    """Add `fields` to the run's run.json: the run is reproducible only with what ran before it (its setup)."""
    provenance = load_provenance(out) or {}
    provenance.update(fields)
    (out / RUN_FILE).write_text(encode_record(provenance) + "\n")


def _link(cached: Path, out: Path) -> None:
    """Make `out` hold the cached run (a copy: run directories stay independent of the cache)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(cached, out)


@dataclass(frozen=True)
class CommitRun:
    """One side recorded at one commit: its run directory, or why the commit could not be recorded."""

    commit: str
    run: Path | None
    """The run directory; None when the command failed or recorded nothing (`failure` says how)."""
    failure: str | None = None
    cached: bool = False
    """Taken from the run cache (a finished run, or a remembered failure): nothing was checked out or run."""


def _commit_entry(side: Side, commit: str, sub: str, *, steps: int, device: str, cache_dir: Path) -> Path:
    """A commit's cache entry: the worktree lives in a fresh temporary folder, so the key names the commit
    and the folder inside it instead of where it happened to be checked out."""
    command = [*side.render(steps=steps, device=device, out=Path("OUT")), *side.setup]
    return cache_dir / str(cache_key(command, side, Path(GIT_PREFIX + commit) / sub, (), revision=commit))


def _record_in_worktree(side: Side, commit: str, *, repo: Path, sub: str, out: Path, steps: int, device: str,
                        cached: Path | None, label: str) -> None:
    """Record `side` in a temporary worktree of `commit`, in its folder `sub`, and store it as `cached` if given."""
    with git_worktree(commit, repo) as tree:
        if not (tree / sub).is_dir():
            raise BaselineError(f"{label}: the folder {sub} does not exist at this commit")
        record_side(side, out, steps=steps, device=device, cwd=tree / sub, label=label)
    if cached is not None:
        _store_in_cache(out, cached)


def record_commit(side: Side, commit: str, *, repo: Path, sub: str, out: Path, steps: int, device: str,
                  cache_dir: Path, label: str) -> CommitRun:
    """Record `side` at `commit` (a full sha) in a temporary worktree of `repo`, running it in the folder `sub`
    of the worktree; cached by commit, so a commit recorded before with this command, environment and seed
    is not checked out again.

    A command that fails or records nothing is an outcome here, not an error (`parity bisect` skips such
    commits, like `git bisect skip`); it is remembered beside the cache entry, since a commit that does
    not build fails the same way each time (delete the `.failed` file to try it again)."""
    cached = _commit_entry(side, commit, sub, steps=steps, device=device, cache_dir=cache_dir)
    failed = cached.with_name(cached.name + ".failed")
    if _reuse(cached, out, label) is not None:
        return CommitRun(commit, out, cached=True)
    if failed.exists():
        return CommitRun(commit, None, failed.read_text(), cached=True)
    try:
        _record_in_worktree(side, commit, repo=repo, sub=sub, out=out, steps=steps, device=device, cached=cached,
                            label=label)
    except BaselineError as exc:
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(str(exc))
        return CommitRun(commit, None, str(exc))
    return CommitRun(commit, out)


def resolve_side(spec: str, *, fallback: Side | None, out: Path, steps: int | None, device: str,
                 cache_dir: Path | None = None) -> Path:
    """Turn `spec` into a run directory, recording it first when it names something runnable.

    With `cache_dir`, a git:REV side is reused when this commit was recorded before with the same command,
    environment and seed (the commit is the code: nothing is checked out), and the working tree (`.`) when
    neither its commit nor its uncommitted changes moved."""
    if spec.startswith(GIT_PREFIX):
        rev, _, sub = spec[len(GIT_PREFIX):].partition(":")
        if fallback is None:
            raise ConfigError(f"{spec}: a git side needs a command; give --pair or --command")
        budget, label = fallback.budget(device, steps), f"{fallback.name} at {rev}"
        commit, repo = _full_sha(rev, fallback.cwd)
        cached = _commit_entry(fallback, commit, sub, steps=budget, device=device, cache_dir=cache_dir) \
            if cache_dir is not None else None
        if cached is None or _reuse(cached, out, label) is None:
            _record_in_worktree(fallback, commit, repo=repo, sub=sub, out=out, steps=budget, device=device,
                                cached=cached, label=label)
        return out
    if spec == WORKING_TREE:
        # The checkout as it is, uncommitted changes included: what a pull request's CI job tests.
        if fallback is None:
            raise ConfigError(f"{spec}: the working tree as a side needs a command; give --pair or --command")
        record_side(fallback, out, steps=fallback.budget(device, steps), device=device,
                    label=f"{fallback.name} (working tree)", cache_dir=cache_dir)
        return out
    path = Path(spec)
    if path.is_dir() or path.is_file():
        return path
    raise ConfigError(f"{spec}: not a run directory, a trace file, git:REV or . (record one with `parity record`)")
