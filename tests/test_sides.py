"""Sides given as `git:REV`: the revision is materialised in a temporary worktree and recorded there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, TOY

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


@pytest.fixture
def trainer_repo(tmp_path):
    repo = tmp_path / "trainer"
    repo.mkdir()
    shutil.copy(TOY / "train.py", repo / "train.py")
    for cmd in (["init", "-q"], ["add", "train.py"], ["commit", "-qm", "baseline trainer"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=GIT_ENV)
    # The uncommitted candidate: a different default learning rate, as a refactor might slip in.
    text = (repo / "train.py").read_text()
    assert '"--lr", type=float, default=1e-3' in text
    (repo / "train.py").write_text(text.replace('"--lr", type=float, default=1e-3', '"--lr", type=float, default=2e-3'))
    return repo


def _report(repo, *args):
    return subprocess.run([sys.executable, "-m", "parity", "report", *args], capture_output=True, text=True, cwd=repo,
                          env={**GIT_ENV, "PYTHONPATH": str(REPO)})


def test_git_baseline_against_working_tree(trainer_repo):
    proc = _report(trainer_repo, "--baseline", "git:HEAD", "--format", "json", "--command", sys.executable,
                   "train.py", "--steps", "4", "--ckpt-dir", "ckpt")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["first_divergence"]["channel"] == "lr" and data["first_divergence"]["step"] == 0
    lr_change = [c for c in data["checks"][0]["evidence"]["changes"] if c["path"] == "root['argparse']['lr']"]
    assert lr_change == [{"path": "root['argparse']['lr']", "baseline": 0.001, "candidate": 0.002}]
    # The user's checkout is untouched and no worktree is left registered.
    assert "default=2e-3" in (trainer_repo / "train.py").read_text()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=trainer_repo, capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1


def test_unknown_revision_is_exit_2(trainer_repo):
    proc = _report(trainer_repo, "--baseline", "git:no-such-rev", "--command", sys.executable, "train.py")
    assert proc.returncode == 2 and "unknown revision" in proc.stderr


def test_dot_candidate_is_the_working_tree(trainer_repo):
    # The CI recipe's command: the base revision in a temporary worktree against the checkout as it is.
    proc = _report(trainer_repo, "--baseline", "git:HEAD", "--candidate", ".", "--format", "json", "--command",
                   sys.executable, "train.py", "--steps", "4", "--ckpt-dir", "ckpt")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["first_divergence"]["channel"] == "lr"
    assert "(working tree)" in proc.stderr


def test_require_clean_refuses_a_dirty_checkout(trainer_repo):
    proc = _report(trainer_repo, "--require-clean", "--baseline", "git:HEAD", "--candidate", ".", "--command",
                   sys.executable, "train.py", "--steps", "4")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("parity: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "uncommitted changes" in errors[0] and "train.py" in errors[0]
    assert "Traceback" not in proc.stderr
