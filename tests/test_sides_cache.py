"""git:REV and working-tree (`.`) sides go through the run cache: a commit recorded before with the same
command is not checked out and run again, and the working tree is re-recorded only when it changed."""

from __future__ import annotations

import subprocess
import sys

from test_sides import GIT_ENV, _report, trainer_repo  # noqa: F401  (trainer_repo is a fixture)

COMMAND = ["--command", sys.executable, "train.py", "--steps", "3", "--ckpt-dir", "ckpt"]


def _recorded(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("parity: recording", "parity: reusing"))]


def test_a_git_side_and_the_working_tree_are_reused_until_they_change(trainer_repo):  # noqa: F811
    (trainer_repo / ".gitignore").write_text("runs/\nckpt/\n")
    first = _report(trainer_repo, "--baseline", "git:HEAD", "--candidate", ".", *COMMAND)
    assert first.returncode == 1, first.stderr
    assert [line.split()[1] for line in _recorded(first.stderr)] == ["recording", "recording"]

    again = _report(trainer_repo, "--baseline", "git:HEAD", "--candidate", ".", *COMMAND)
    assert again.returncode == 1 and again.stdout == first.stdout, again.stderr
    assert [line.split()[1] for line in _recorded(again.stderr)] == ["reusing", "reusing"]
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=trainer_repo, capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1

    # A new commit is another baseline; an edit of the working tree is another candidate.
    for cmd in (["add", "train.py", ".gitignore"], ["commit", "-qm", "the candidate's learning rate"]):
        subprocess.run(["git", *cmd], cwd=trainer_repo, check=True, env=GIT_ENV)
    (trainer_repo / "train.py").write_text((trainer_repo / "train.py").read_text() + "\n# a comment\n")
    moved = _report(trainer_repo, "--baseline", "git:HEAD", "--candidate", ".", *COMMAND)
    assert moved.returncode == 0, moved.stderr  # same learning rate on both sides now
    assert [line.split()[1] for line in _recorded(moved.stderr)] == ["recording", "recording"]

