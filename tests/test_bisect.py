"""`parity bisect` on a temporary repository: 16 commits after a good one, a numerics change planted in the
middle, a commit that does not run in the bad half, benign commits around them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO
from parity.explain.bisect import AMBIGUOUS, BAD, FOUND, GOOD, SKIP, BisectResult, TestedCommit, _search
from test_sides import GIT_ENV

TRAINER = """\
import sys

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for step in range(int(sys.argv[1])):
    opt.zero_grad()
    loss = ((model(x) * 0.5 - y) ** 2).mean()
    loss.backward()
    opt.step()
"""
PAIR = """\
[baseline]
command = ["{python}", "train.py", "{steps}"]
steps = 3

[candidate]
command = ["{python}", "train.py", "{steps}"]
steps = 3
"""
PLANTED, BROKEN, FIXED = 9, 12, 13
COMMITS = 16


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, env=GIT_ENV, capture_output=True, text=True).stdout


def _commit(repo, number, message, edit):
    path, old, new = edit
    text = (repo / path).read_text() if (repo / path).exists() else ""
    (repo / path).write_text(text.replace(old, new) if old else text + new)
    _git(repo, "add", path)
    _git(repo, "commit", "-qm", f"{message}\n\nCommit {number} of the bisect fixture.")


def _edit(number):
    """Commit `number`'s change: the planted numerics change, the breakage and its fix, else a benign one."""
    if number == PLANTED:
        return "numerics: scale the output by 0.5000001", ("train.py", "* 0.5 ", "* 0.5000001 ")
    if number == BROKEN:
        return "refactor: half-finished edit", ("train.py", "for step in", "for step in in")
    if number == FIXED:
        return "refactor: finish the edit", ("train.py", "for step in in", "for step in")
    if number % 2:
        return f"docs: README line {number}", ("README.md", "", f"line {number}\n")
    return f"comment {number}", ("train.py", "", f"# comment {number}\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("bisect") / "trainer"
    repo.mkdir()
    (repo / "train.py").write_text(TRAINER)
    (repo / "pyproject.toml").write_text("[project]\nname = 'trainer'\n")
    (repo / "tiny.toml").write_text(PAIR)
    _git(repo, "init", "-q")
    _git(repo, "add", "train.py", "pyproject.toml", "tiny.toml")
    _git(repo, "commit", "-qm", "initial trainer")
    _git(repo, "tag", "good")
    for number in range(1, COMMITS + 1):
        message, edit = _edit(number)
        _commit(repo, number, message, edit)
    return repo


def _sha(repo, rev):
    return _git(repo, "rev-parse", rev).strip()


def _bisect(repo, *args):
    return subprocess.run([sys.executable, "-m", "parity", "bisect", "--pair", "tiny.toml", "--runs-dir",
                           str(repo.parent / "runs"), *args], capture_output=True, text=True, cwd=repo,
                          env={**GIT_ENV, "PYTHONPATH": str(REPO)})


def test_finds_the_planted_commit_and_skips_the_broken_one(repo):
    proc = _bisect(repo, "--good", "good", "--bad", "HEAD", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    planted = _sha(repo, f"HEAD~{COMMITS - PLANTED}")
    assert data["status"] == "found" and data["commits"] == COMMITS
    assert data["first_bad"]["sha"] == planted and data["first_bad"]["subject"] == "numerics: scale the output by 0.5000001"
    assert "Commit 9 of the bisect fixture." in data["message"]
    assert data["first_divergence"]["step"] == 0 and data["first_divergence"]["channel"] in ("loss", "params")
    assert data["skipped"] == [_sha(repo, f"HEAD~{COMMITS - BROKEN}")]
    skipped = next(t for t in data["tested"] if t["verdict"] == "skip")
    assert "SyntaxError" in skipped["reason"]
    # Logarithmic: the bad revision plus about log2(16) probes (one spent on the broken commit).
    assert len(data["tested"]) <= math.ceil(math.log2(COMMITS)) + 2
    assert data["runs_recorded"] == len(data["tested"]) + 1  # and the good revision's reference run
    assert data["last_good"] == _sha(repo, f"HEAD~{COMMITS - PLANTED + 1}")
    assert data["reproduce"][0].startswith("parity bisect --pair tiny.toml --side candidate --good ")
    # What `parity report --explain` reads from it.
    from parity.report.explanation import check_explanation, explanation_lines

    assert (data["kind"], data["commit"], data["subject"]) == ("bisect", planted, data["first_bad"]["subject"])
    check_explanation(data, "bisect.json")
    assert any(planted[:7] in line for line in explanation_lines([data]))
    assert "bisect: testing" in proc.stderr and "left, ~" in proc.stderr
    # The user's checkout is untouched and no worktree is left registered.
    assert _git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert len(_git(repo, "worktree", "list").strip().splitlines()) == 1

    # A second bisect (markdown this time) records nothing: every run, and the skip, come from the cache.
    again = _bisect(repo, "--good", "good", "--bad", "HEAD")
    assert again.returncode == 1, again.stderr
    text, short = again.stdout, planted[:12]
    assert f"Runs recorded: 0; reused from the cache: {data['runs_recorded']}" in text
    assert f"**First bad commit:** `{short}` numerics: scale the output by 0.5000001" in text
    assert "**First divergence it causes:** step 0" in text and f"git show {short}" in text
    for heading in ("## Commits tested", "## Skipped", "## Reproduce"):
        assert heading in text


@pytest.mark.parametrize("good, bad, tested", [("good", f"HEAD~{COMMITS - PLANTED + 1}", 1), ("HEAD", "HEAD", 0)])
def test_bad_revision_that_trains_like_the_good_one_is_exit_0(repo, good, bad, tested):
    proc = _bisect(repo, "--good", good, "--bad", bad, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "matches" and data["first_bad"] is None and len(data["tested"]) == tested
    assert "nothing to bisect" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (("--good", "no-such-rev", "--bad", "HEAD"), "--good no-such-rev: unknown revision"),
    (("--good", "HEAD", "--bad", "good"), "is not an ancestor of --bad good"),
    (("--good", f"HEAD~{COMMITS - BROKEN}", "--bad", "HEAD"), "the candidate side does not run there"),
    (("--good", "good", "--bad", "HEAD", "--pair", "no-such-pair"), "no pair file 'no-such-pair'"),
])
def test_bad_input_is_exit_2_in_one_line(repo, args, message):
    proc = _bisect(repo, *args)
    assert proc.returncode == 2, proc.stderr
    # One error line (progress lines may come before it, once revisions are being recorded).
    errors = [line for line in proc.stderr.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1 and message in errors[0] and errors[0] == proc.stderr.strip().splitlines()[-1], proc.stderr


class _Verdicts:
    """Stands in for the recording side of a bisection: each commit's verdict is given, nothing runs."""

    which = "candidate"

    def __init__(self, verdicts):
        self.verdicts, self.probed = verdicts, []
        self.repo = SimpleNamespace(commit=lambda sha: SimpleNamespace(message=f"message of {sha}"))

    def say(self, message):
        pass

    def test(self, sha):
        self.probed.append(sha)
        return TestedCommit(sha, f"subject {sha}", self.verdicts[sha])


def _search_over(verdicts):
    commits = list(verdicts)
    result = BisectResult("p", "candidate", "good", "g" * 40, "bad", commits[-1], "matches", len(commits))
    work = _Verdicts(verdicts)
    _search(work, commits, result, "bad")
    return result, work


def test_search_is_logarithmic():
    commits = [f"c{i:04d}" for i in range(1000)]
    result, work = _search_over({c: GOOD if i < 617 else BAD for i, c in enumerate(commits)})
    assert result.status == FOUND and result.first_bad.sha == "c0617" and result.last_good == "c0616"
    assert len(work.probed) <= math.ceil(math.log2(1000)) + 1


def test_skipped_commits_before_the_first_bad_one_make_it_ambiguous():
    verdicts = {f"c{i}": GOOD if i < 5 else SKIP if i in (5, 6) else BAD for i in range(12)}
    result, _ = _search_over(verdicts)
    assert result.status == AMBIGUOUS and result.first_bad.sha == "c7" and result.candidates == ["c5", "c6"]
    assert result.last_good == "c4" and [t.sha for t in result.skipped] == ["c5", "c6"]
