"""The Reproduce block of a report: every shell step that re-creates it from a fresh clone, run at the project root."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Sequence

from parity.capture import config as cfg
from parity.capture.launch import RUN_FILE, load_provenance
from parity.trace import schema

#: The README's install line; the constraints pin the CPU build of torch the bundled reports are measured with.
INSTALL_LINE = 'pip install -c constraints-cpu.txt -e ".[trainers,frameworks,dev]"'
#: On a GPU machine the README says to bring your own CUDA build of torch, so the CPU pin is left out.
INSTALL_LINE_CUDA = 'pip install -e ".[trainers,frameworks,dev]"  # after installing a CUDA build of torch'
_INTERPRETER = re.compile(r"python[0-9.]*")


def find_project_root(start: str | os.PathLike) -> Path:
    """The nearest folder at or above `start` that holds pyproject.toml; `start` itself when none does."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return start


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _portable_path(value: str, here: Path, root: Path, moved: dict[Path, Path]) -> str:
    """`value` relative to `here` when it is an absolute path inside the project; otherwise unchanged."""
    if not os.path.isabs(value):
        return value
    path = Path(os.path.normpath(value))
    for old, new in moved.items():
        if _inside(path, old):
            path = new / path.relative_to(old)
    if not _inside(path, root):
        return value
    return os.path.relpath(path, here)


def _portable_arg(arg: str, here: Path, root: Path, moved: dict[Path, Path]) -> str:
    """One command-line argument as it reads from `here` in any clone: interpreter paths become `python`."""
    if os.path.isabs(arg) and _INTERPRETER.fullmatch(Path(arg).name):
        # The recording machine's interpreter (a venv or pyenv path); in a clone it is whatever
        # `python` the install line installed into.
        return "python"
    option, equals, value = arg.partition("=") if arg.startswith("-") and "=" in arg else ("", "", arg)
    return option + equals + _portable_path(value, here, root, moved)


def _portable_command(command: Sequence[str], here: Path, root: Path, moved: dict[Path, Path]) -> str:
    return shlex.join(_portable_arg(a, here, root, moved) for a in command)


def _with_env(env: dict[str, str], line: str) -> str:
    assignments = [f"{k}={shlex.quote(str(v))}" for k, v in sorted(env.items())]
    return " ".join([*assignments, line])


def _in_folder(here: Path, root: Path, line: str) -> str:
    """`line` run from `here`: a subshell `cd`, so the next line starts at the project root again."""
    if here == root:
        return line
    return f"(cd {shlex.quote(os.path.relpath(here, root))} && {line})"


def _run_env(provenance: dict) -> dict[str, str]:
    """What the trainer's environment had that a clean shell may not: inherited numerics variables, the side's env."""
    env = {**provenance.get("inherited_env", {}), **provenance.get("env", {})}
    if provenance.get("skip_loads"):
        env[cfg.ENV_SKIP_LOADS] = ",".join(provenance["skip_loads"])
    return env


def record_lines(run_dir: str | os.PathLike, provenance: dict | None, root: Path) -> list[str]:
    """The shell lines that record `run_dir` again: its setup step, then `parity record` with its env and cwd."""
    run_dir = Path(run_dir).resolve()
    if _inside(run_dir, root):
        shown = os.path.relpath(run_dir, root)
    else:
        shown = run_dir.name
    if not provenance:
        return [f"# {shown}: no {RUN_FILE} (recorded through the Python API?): record it again "
                "with `parity record` before the line below"]
    here = Path(provenance["cwd"])
    if not _inside(here, root) or not _inside(run_dir, root):
        # A git:REV side runs in a temporary worktree that no longer exists; the parity line that
        # follows materialises it again.
        return [f"# {shown}: recorded outside the project (a git:REV worktree or a foreign folder); "
                "the parity line below records it again"]
    moved = {Path(provenance["out"]): run_dir} if provenance.get("out") else {}
    env = _run_env(provenance)
    lines = []
    setup = provenance.get("setup")
    if setup:
        setup_here = Path(setup["cwd"])
        setup_line = _with_env({**env, **setup.get("env", {})}, _portable_command(setup["command"], setup_here, root, moved))
        lines.append(f"mkdir -p {shlex.quote(shown)} && {_in_folder(setup_here, root, setup_line)}")
    options = ["--out", os.path.relpath(run_dir, here)]
    if provenance.get("seed") is not None:
        options += ["--seed", str(provenance["seed"])]
    if provenance.get("deterministic"):
        options.append("--deterministic")
    options += ["--level", provenance.get("level") or schema.LEVEL_FULL]
    record = f"parity record {shlex.join(options)} -- {_portable_command(provenance['command'], here, root, moved)}"
    lines.append(_in_folder(here, root, _with_env(env, record)))
    return lines


def parity_line(argv: Sequence[str], root: Path, invoked_in: Path, env: dict[str, str] | None = None) -> str:
    """The `parity ...` command that generated the report, as typed from the project root (`invoked_in` lies inside it)."""
    here = invoked_in.resolve()
    return _in_folder(here, root, _with_env(env or {}, "parity " + _portable_command(argv, here, root, {})))


def _shared_env(provenances: list[dict]) -> dict[str, str]:
    """Inherited numerics variables every run agrees on: the environment the report command itself ran in."""
    envs = [p.get("inherited_env", {}) for p in provenances]
    if not envs:
        return {}
    return {k: v for k, v in envs[0].items() if all(e.get(k) == v for e in envs[1:])}


def reproduce_block(run_dirs: Sequence[str | os.PathLike | None], argv: Sequence[str] | None, *,
                    invoked_in: str | os.PathLike | None = None, records_runs: bool = False,
                    cuda: bool = False) -> list[str]:
    """Every line of the Reproduce block: install, each run's setup and record line, then the parity command.

    `run_dirs` are the runs the report compares (None entries skipped; a trace file stands for its folder);
    `argv` is the parity command line after `parity` (None when it is unknown). With `records_runs` the
    parity command records the runs itself (a pair report): the record lines are then the same steps
    spelled out, and the parity line re-creates them in the same directories.
    """
    invoked_in = Path(invoked_in or Path.cwd()).resolve()
    root = find_project_root(invoked_in)
    lines = []
    if (root / "constraints-cpu.txt").is_file():
        lines.append(INSTALL_LINE_CUDA if cuda else INSTALL_LINE)
    runs = [Path(d) for d in run_dirs if d is not None]
    runs = [d.parent if d.is_file() else d for d in runs]
    provenances = [load_provenance(d) for d in runs]
    if records_runs:
        lines.append("# the runs step by step (setup, environment, recording), for anyone who wants the pieces:")
    for run_dir, provenance in zip(runs, provenances):
        lines += record_lines(run_dir, provenance, root)
    if argv is None:
        lines.append("# the parity command that compared these runs was called in-process; its command line is unknown")
        return lines
    env = _shared_env([p for p in provenances if p]) if records_runs else {}
    if records_runs:
        lines.append("# the whole report in one command (records the same runs into the same directories, then compares):")
    lines.append(parity_line(argv, root, invoked_in, env))
    return lines
