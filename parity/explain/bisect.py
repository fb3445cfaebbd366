"""`parity bisect`: the first commit between a good and a bad revision at which one side of a pair stops
training like the good revision does, found in a logarithmic number of recordings.

Each revision is materialised in a temporary git worktree and recorded once (`sides.record_commit`
caches runs by commit), and every tested commit is compared with the good revision's run of the same
side: bitwise, or within the pair's tolerances. Commits whose command fails or records nothing are
skipped and reported, like `git bisect skip`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from parity.checks.base import Tolerance
from parity.checks.compare import compare_traces
from parity.exceptions import ConfigError, TraceError, UsageError
from parity.pairs import PAIRS_DIR, Pair, Side
from parity.sides import CommitRun, record_commit
from parity.trace import schema
from parity.trace.reader import Trace, load_run

#: Verdicts of one tested commit, as `git bisect` names them.
GOOD, BAD, SKIP = "good", "bad", "skip"
#: Outcomes of a bisection.
FOUND, AMBIGUOUS, MATCHES = "found", "ambiguous", "matches"
SIDES = ("candidate", "baseline")


@dataclass(frozen=True)
class TestedCommit:
    """One commit recorded and judged against the good revision's run."""

    __test__ = False  # not a pytest class, despite the name

    sha: str
    subject: str
    verdict: str
    """GOOD (trains like the good revision, bitwise or within tolerance), BAD, or SKIP (could not be judged)."""
    comparison: str | None = None
    """The comparison's verdict (IDENTICAL, EQUIVALENT, DIFFERENT); None when skipped."""
    first_divergence: Mapping[str, Any] | None = None
    reason: str = ""
    """Why a skipped commit could not be judged."""
    cached: bool = False
    """Its run (or its failure) came from the run cache: nothing was recorded for it this time."""

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "subject": self.subject, "verdict": self.verdict, "comparison": self.comparison,
                "first_divergence": dict(self.first_divergence) if self.first_divergence else None,
                "reason": self.reason or None, "cached": self.cached}


@dataclass
class BisectResult:
    """What `parity bisect` found; rendered by parity.report.bisect_report, never printed here."""

    pair: str
    side: str
    good: str
    """The good revision as given, and `good_sha` the commit it names (its run is the reference)."""
    good_sha: str
    bad: str
    bad_sha: str
    status: str
    """FOUND, AMBIGUOUS (skipped commits hide which one is first), or MATCHES (the bad revision trains like the good)."""
    commits: int
    """Commits on the first-parent line after the good revision, up to and including the bad one."""
    tested: list[TestedCommit] = field(default_factory=list)
    """In the order tested (the bad revision first); the good revision is the reference, not listed."""
    first_bad: TestedCommit | None = None
    message: str = ""
    """The first bad commit's full message."""
    last_good: str = ""
    """The newest commit known to train like the good revision (the good revision itself if none tested good)."""
    candidates: list[str] = field(default_factory=list)
    """When AMBIGUOUS: the skipped commits that could be the first bad one, before `first_bad`."""
    runs_recorded: int = 0
    """Revisions whose side was checked out and run this time (the good one included); cache hits are not."""
    runs_reused: int = 0
    reproduce: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[TestedCommit]:
        return [t for t in self.tested if t.verdict == SKIP]

    def to_json(self) -> dict[str, Any]:
        # kind/commit/subject are the Explanation section's contract (report/explanation.py).
        return {"kind": "bisect", "commit": self.first_bad.sha if self.first_bad else None,
                "subject": self.first_bad.subject if self.first_bad else None,
                "pair": self.pair, "side": self.side, "status": self.status,
                "good": {"rev": self.good, "sha": self.good_sha}, "bad": {"rev": self.bad, "sha": self.bad_sha},
                "commits": self.commits, "first_bad": self.first_bad.to_json() if self.first_bad else None,
                "message": self.message or None, "last_good": self.last_good,
                "first_divergence": dict(self.first_bad.first_divergence) if self.first_bad and
                self.first_bad.first_divergence else None,
                "candidates": self.candidates, "tested": [t.to_json() for t in self.tested],
                "skipped": [t.sha for t in self.skipped], "runs_recorded": self.runs_recorded,
                "runs_reused": self.runs_reused, "reproduce": self.reproduce}


def _say(message: str) -> None:
    print(f"parity: {message}", file=sys.stderr, flush=True)


def _open_repo(path: Path) -> Any:
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UsageError(f"--repo {path}: not inside a git repository") from None


def _resolve(repo: Any, option: str, rev: str) -> Any:
    import git

    try:
        return repo.commit(rev)
    except (git.BadName, git.BadObject, ValueError):
        raise UsageError(f"{option} {rev}: unknown revision in {repo.working_tree_dir} "
                          "(try `git log --oneline --first-parent`)") from None


def _side_folder(pair: Pair, which: str, root: Path) -> tuple[Side, str]:
    """The side to bisect and the folder it runs in, relative to the repository (the same folder in each worktree)."""
    if which not in SIDES:
        raise UsageError(f"--side {which}: choose candidate or baseline")
    side = dict(zip(("baseline", "candidate"), pair.sides()))[which]
    try:
        return side, str(side.cwd.resolve().relative_to(root))
    except ValueError:
        raise ConfigError(f"{pair.path}: the {which} side runs in {side.cwd}, outside the repository {root}; "
                          "give --repo the repository its code lives in") from None


def _reason(failure: str) -> str:
    """A skipped commit's failure in one line: what failed, and the last line of its output (the error)."""
    lines = [line.strip() for line in failure.splitlines() if line.strip()]
    head = lines[0] if lines else "failed"
    return head if len(lines) < 2 else f"{head} ... {lines[-1]}"


class _Bisection:
    """Records and judges commits of one side against the good revision's run; counts what it recorded."""

    def __init__(self, pair: Pair, side: Side, *, which: str, repo: Any, sub: str, steps: int, device: str,
                 runs_dir: Path, tolerances: Mapping[str, Tolerance], say: Callable[[str], None]) -> None:
        self.pair, self.side, self.which, self.repo, self.sub = pair, side, which, repo, sub
        self.steps, self.device, self.runs_dir, self.tolerances, self.say = steps, device, runs_dir, tolerances, say
        self.recorded = self.reused = 0
        self.reference: Trace | None = None

    def record(self, sha: str) -> CommitRun:
        run = record_commit(self.side, sha, repo=Path(self.repo.working_tree_dir), sub=self.sub,
                            out=self.runs_dir / self.pair.name / "bisect" / self.which / sha[:12], steps=self.steps,
                            device=self.device, cache_dir=self.runs_dir / ".cache",
                            label=f"{self.pair.name} {self.which} at {sha[:7]}")
        if run.cached:
            self.reused += 1
        else:
            self.recorded += 1
        return run

    def test(self, sha: str) -> TestedCommit:
        subject = self.repo.commit(sha).summary
        run = self.record(sha)
        if run.run is None:
            return TestedCommit(sha, subject, SKIP, reason=_reason(run.failure or ""), cached=run.cached)
        try:
            trace = load_run(run.run).primary
        except TraceError as exc:
            return TestedCommit(sha, subject, SKIP, reason=f"unreadable trace: {exc}", cached=run.cached)
        c = compare_traces(self.reference, trace, tolerances=self.tolerances, ignore_args=self.pair.ignore_args)
        verdict = {schema.DIFFERENT: BAD, schema.IDENTICAL: GOOD, schema.EQUIVALENT: GOOD}.get(c.verdict, SKIP)
        reason = "" if verdict != SKIP else f"nothing comparable recorded (verdict {c.verdict})"
        divergence = None
        if c.first_divergence:
            divergence = {k: c.first_divergence.get(k) for k in ("step", "channel", "diagnosis")}
        return TestedCommit(sha, subject, verdict, c.verdict, divergence, reason, run.cached)


def _middle(left: list[int], lo: int, hi: int) -> int:
    """The untested index nearest the middle of (lo, hi): skipped commits push the probe beside them."""
    centre = (lo + hi) / 2
    return min(left, key=lambda i: (abs(i - centre), i))


def _pair_arg(pair: Pair) -> str:
    return pair.name if pair.path.resolve().parent == PAIRS_DIR else str(pair.path)


def _tolerance_arg(tolerance: Tolerance | None) -> list[str]:
    if tolerance is None:
        return []
    value = f"{tolerance.ulps}ulp" if tolerance.ulps else f"{tolerance.rel:g}" if tolerance.rel else "bits"
    return ["--tolerance", f"loss:{value}"]


def bisect(pair: Pair, *, good: str, bad: str, side: str = "candidate", repo: str | Path | None = None,
           steps: int | None = None, device: str = "cpu", runs_dir: str | Path = "runs",
           tolerances: Mapping[str, Tolerance] | None = None, tolerance: Tolerance | None = None,
           say: Callable[[str], None] = _say) -> BisectResult:
    """Find the first commit in `good..bad` (first parents) at which `side` of `pair` stops training like it
    does at `good`. `tolerances`: check name -> Tolerance (session.tolerances); `tolerance` is only echoed in
    the reproduce command. ConfigError (exit 2) for unknown revisions, a good revision that is not an
    ancestor of the bad one, or one where the side does not run."""
    git_repo = _open_repo(Path(repo) if repo else Path.cwd())
    root = Path(git_repo.working_tree_dir).resolve()
    chosen, sub = _side_folder(pair, side, root)
    good_commit, bad_commit = _resolve(git_repo, "--good", good), _resolve(git_repo, "--bad", bad)
    if not git_repo.is_ancestor(good_commit, bad_commit):
        raise UsageError(f"--good {good} ({good_commit.hexsha[:7]}) is not an ancestor of --bad {bad} "
                          f"({bad_commit.hexsha[:7]}): give a good revision older than the bad one, on its history")
    commits = git_repo.git.rev_list("--first-parent", "--reverse", f"{good_commit.hexsha}..{bad_commit.hexsha}").split()
    work = _Bisection(pair, chosen, which=side, repo=git_repo, sub=sub, steps=chosen.budget(device, steps),
                      device=device, runs_dir=Path(runs_dir), tolerances=tolerances or {}, say=say)
    result = BisectResult(pair.name, side, good, good_commit.hexsha, bad, bad_commit.hexsha, MATCHES, len(commits),
                          last_good=good_commit.hexsha)
    say(f"bisect: recording the good revision {good_commit.hexsha[:7]} (the reference), {len(commits)} commits after it")
    reference = work.record(good_commit.hexsha)
    if reference.run is None:
        raise UsageError(f"--good {good}: the {side} side does not run there, so there is nothing to compare with "
                          f"({_reason(reference.failure or '')})")
    work.reference = load_run(reference.run).primary
    if commits:
        _search(work, commits, result, bad)
    result.runs_recorded, result.runs_reused = work.recorded, work.reused
    if result.first_bad is not None:
        invocation = ["parity", "bisect", "--pair", _pair_arg(pair), "--side", side, "--good", result.last_good[:12],
                      "--bad", result.first_bad.sha[:12], *(["--steps", str(steps)] if steps else []),
                      *(["--device", device] if device != "cpu" else []), *(["--repo", str(repo)] if repo else []),
                      *_tolerance_arg(tolerance)]
        result.reproduce = [" ".join(invocation), f"git show {result.first_bad.sha[:12]}"]
    return result


def _search(work: _Bisection, commits: list[str], result: BisectResult, bad: str) -> None:
    """Binary search over `commits` (oldest first, the bad revision last), filling `result`."""
    work.say(f"bisect: testing the bad revision {commits[-1][:7]}")
    last = work.test(commits[-1])
    result.tested.append(last)
    if last.verdict == SKIP:
        raise UsageError(f"--bad {bad}: the {work.which} side cannot be judged there ({last.reason}); "
                          "give a bad revision where it runs")
    if last.verdict == GOOD:
        return
    lo, hi, skipped = -1, len(commits) - 1, set()  # commits[lo] trains like good (-1: good itself); commits[hi] not
    while left := [i for i in range(lo + 1, hi) if i not in skipped]:
        probe = _middle(left, lo, hi)
        work.say(f"bisect: testing {commits[probe][:7]} ({len(left)} left, ~{math.ceil(math.log2(len(left) + 1))} steps)")
        tested = work.test(commits[probe])
        result.tested.append(tested)
        if tested.verdict == SKIP:
            skipped.add(probe)
            work.say(f"bisect: skipping {commits[probe][:7]}: {tested.reason}")
        elif tested.verdict == GOOD:
            lo = probe
        else:
            hi = probe
    first = next(t for t in result.tested if t.sha == commits[hi])
    result.first_bad, result.message = first, work.repo.commit(first.sha).message.strip()
    result.last_good = commits[lo] if lo >= 0 else result.good_sha
    result.candidates = commits[lo + 1:hi]
    result.status = AMBIGUOUS if result.candidates else FOUND
