"""Run metadata: the trainer's own git provenance (not the cwd's), load average and CPU count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import parity
from parity.capture import metadata
from parity.trace.reader import load_run

TRAINER = """\
import torch

model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizer.zero_grad()
model(torch.ones(3, 2)).sum().backward()
optimizer.step()
"""


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


def _repo(path: Path, files: dict[str, str]) -> str:
    """A one-commit git repository at `path`; returns the commit."""
    path.mkdir(parents=True)
    _git(path, "init", "-q")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "init")
    return _git(path, "rev-parse", "HEAD")


@pytest.fixture
def two_repos(tmp_path):
    """A trainer's repository and an unrelated one to run it from, each with its own commit."""
    trainer_commit = _repo(tmp_path / "trainer", {"train.py": TRAINER, "pkg/__init__.py": "", "pkg/run.py": TRAINER})
    elsewhere_commit = _repo(tmp_path / "elsewhere", {"notes.txt": "not the trainer\n"})
    assert trainer_commit != elsewhere_commit
    return tmp_path / "trainer", trainer_commit, tmp_path / "elsewhere"


def test_recorded_header_names_the_scripts_repository_not_the_cwd(two_repos, tmp_path):
    trainer, commit, elsewhere = two_repos
    done = subprocess.run([sys.executable, "-m", "parity", "record", "--out", str(tmp_path / "run"), "--",
                           sys.executable, str(trainer / "train.py")],
                          cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header = load_run(tmp_path / "run").primary.header
    git = header["meta"]["git"]
    assert (git["commit"], Path(git["root"]).resolve(), git["dirty"]) == (commit, trainer.resolve(), False)
    assert Path(header["meta"]["cwd"]).resolve() == elsewhere.resolve()


def test_trainer_git_state_follows_main_module_then_argv_then_cwd(two_repos, monkeypatch):
    trainer, commit, elsewhere = two_repos
    monkeypatch.chdir(elsewhere)
    elsewhere_commit = _git(elsewhere, "rev-parse", "HEAD")
    # `python -m pkg.run` once __main__ runs: the module's spec names its file, argv[0] may not yet.
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(origin=str(trainer / "pkg" / "run.py"))
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["-m"])
    assert metadata.trainer_git_state()["commit"] == commit
    # At sitecustomize time for a script: no __main__ file yet, argv[0] is the script.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(sys, "argv", [str(trainer / "train.py"), "--steps", "1"])
    assert metadata.trainer_git_state()["commit"] == commit
    # `-m` before __main__ runs, or `-c`: nothing names the trainer, so the cwd's repository is the guess.
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert metadata.trainer_git_state()["commit"] == elsewhere_commit
    assert metadata.trainer_git_state(trainer / "pkg")["commit"] == commit


def test_trainer_git_state_outside_git_is_none(tmp_path):
    (tmp_path / "plain").mkdir()
    assert metadata.trainer_git_state(tmp_path / "plain") is None


def test_run_metadata_and_end_record_carry_load_average(tmp_path):
    meta = metadata.run_metadata()
    assert meta["cpus"] == os.cpu_count() and meta["cpus"] >= 1
    assert len(meta["load"]) == 3 and all(isinstance(v, float) and v >= 0 for v in meta["load"])
    json.dumps(meta, allow_nan=False)
    with parity.record(tmp_path / "run"):
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
    trace = load_run(tmp_path / "run").primary
    assert len(trace.end["load"]) == 3
    assert trace.header["meta"]["cpus"] == os.cpu_count()
