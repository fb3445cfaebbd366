"""examples/ci/github-actions.yml: its structure, and its own gate and report `run:` steps executed
locally with bash in a temporary git copy of this project (not on the hosting service)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
PAIR = "toy-logging"
STEPS = "6"
#: Steps that need the hosting service (or re-install the project): identified by id, never run here.
SKIPPED = {"checkout", "python", "install", "upload", "comment"}


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _job(workflow: dict) -> dict:
    (job,) = workflow["jobs"].values()
    return job


def _step(job: dict, step_id: str) -> dict:
    (found,) = [s for s in job["steps"] if s.get("id") == step_id]
    return found


def test_workflow_structure():
    workflow = _workflow()
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in (trigger if isinstance(trigger, (dict, list)) else [trigger])
    job = _job(workflow)
    steps = job["steps"]
    ids = [s.get("id") for s in steps]
    assert all(ids) and len(set(ids)) == len(ids), ids
    assert ids.index("checkout") < ids.index("install") < ids.index("gate") < ids.index("report") \
        < ids.index("upload") < ids.index("comment")

    checkout = _step(job, "checkout")
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    assert str(_step(job, "python")["with"]["python-version"]) == "3.11"
    assert 'pip install -c constraints-cpu.txt -e ".[trainers,frameworks,dev]"' in _step(job, "install")["run"]

    env = workflow["env"]
    assert "PARITY_PAIRS" in env and env.get("PARITY_STEPS") == ""  # empty: each pair file's own budget
    gate = _step(job, "gate")["run"]
    assert 'parity gate --pair "$p" --golden' in gate and "$PARITY_PAIRS" in gate
    report = _step(job, "report")
    assert "--candidate . --pair \"$p\"" in report["run"] and "--format json" in report["run"]
    assert env["PARITY_BASE"] == "origin/main" and 'git:$PARITY_BASE' in report["run"]
    # The report, the upload and the comment must still run after a failed gate.
    for step_id in ("report", "upload", "comment"):
        assert "!cancelled()" in _step(job, step_id)["if"], step_id
    upload = _step(job, "upload")
    assert upload["uses"].startswith("actions/upload-artifact@") and "parity-reports" in upload["with"]["path"]
    comment = _step(job, "comment")
    assert "gh pr comment" in comment["run"] and "--body-file" in comment["run"]
    assert "GITHUB_TOKEN" in comment["env"]["GH_TOKEN"]


def _copy_project(dest: Path) -> None:
    """The project's files as git sees them (tracked and untracked, not ignored), uncommitted edits included."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree, or a submodule
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    # This test saves its own golden (at its own step count); a committed one would be refused by `save`.
    shutil.rmtree(dest / "goldens" / PAIR, ignore_errors=True)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=parity-ci-test", "-c", "user.email=ci@example.invalid",
                    "-c", "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True)


def _run_step(script: str, repo: Path, env: dict[str, str], scratch: Path, name: str) -> subprocess.CompletedProcess:
    """A `run:` block as GitHub runs it under `shell: bash`: bash --noprofile --norc -eo pipefail FILE."""
    path = scratch / f"{name}.sh"
    path.write_text(script)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_workflow_steps_run_locally(tmp_path):
    if shutil.which("git") is None or shutil.which("bash") is None:
        pytest.skip("needs git and bash")
    workflow = _workflow()
    job = _job(workflow)
    assert workflow.get("defaults", {}).get("run", {}).get("shell") == "bash"

    repo = tmp_path / "repo"
    _copy_project(repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # what fetch-depth 0 gives the job
    _git(repo, "checkout", "-q", "-b", "pull-request")
    candidate = repo / "tests" / "toy" / "variants" / "logging.py"
    candidate.write_text(candidate.read_text() + "\n# a pull request that changes nothing numerical\n")

    # The workflow's env (expressions of the hosting service left out), with this test's overrides. The
    # install step is replaced by PYTHONPATH: `parity` then imports the copy, so the bundled pair names,
    # goldens/ and runs/ all resolve inside the temporary repository.
    env = {**os.environ, **{k: str(v) for k, v in workflow.get("env", {}).items() if "${{" not in str(v)},
           **{k: str(v) for k, v in job.get("env", {}).items() if "${{" not in str(v)}}
    env.update(PARITY_PAIRS=PAIR, PARITY_STEPS=STEPS, PYTHONPATH=str(repo),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outputs, summary = scratch / "github_output", scratch / "step_summary"
    env.update(GITHUB_OUTPUT=str(outputs), GITHUB_STEP_SUMMARY=str(summary))

    saved = subprocess.run(["parity", "golden", "save", "--pair", PAIR, "--steps", STEPS], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    assert list((repo / "goldens" / PAIR).glob("*/golden.json")), "the golden was saved in the copy"
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "pull request: a comment in the candidate, the golden committed")

    ran = {}
    for step in job["steps"]:
        if step["id"] in SKIPPED:
            continue
        assert "run" in step, f"step {step['id']} needs the hosting service: add it to SKIPPED or make it a run: step"
        step_env = {**env, **{k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)}}
        ran[step["id"]] = _run_step(step["run"], repo, step_env, scratch, step["id"])
    assert set(ran) == {"gate", "report"}

    gate = ran["gate"]
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert f"gate {PAIR} passed" in gate.stderr
    assert "failed=\n" in outputs.read_text()

    report = ran["report"]
    assert report.returncode == 0, report.stdout + report.stderr
    reports = repo / "parity-reports"
    markdown, as_json = reports / f"{PAIR}.md", reports / f"{PAIR}.json"
    assert markdown.is_file() and as_json.is_file(), sorted(p.name for p in reports.iterdir())
    assert list(reports.glob("*.png")), "the markdown report's plots are beside it, for the artifact"
    from parity.pairs import load_pair

    expected = {e.check: e.status for e in load_pair(repo / "parity" / "pairs" / f"{PAIR}.toml").expectations}
    verdict = json.loads(as_json.read_text())["verdict"]
    assert verdict == expected["verdict"] == "IDENTICAL"
    assert "at origin/main" in report.stderr, "the baseline was the base revision in a worktree"
    body = (reports / "comment.md").read_text()
    assert f"{PAIR}: passed" in body and markdown.read_text().strip()[:200] in body
    assert body in summary.read_text()

    # Every pair is gated and reported before the step fails: a broken pair name does not hide the good one.
    env.update(PARITY_PAIRS=f"no-such-pair {PAIR}")
    failing = _run_step(_step(job, "gate")["run"], repo, env, scratch, "gate-failing")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert f"gate {PAIR} passed" in failing.stderr
    gate_lines = (reports / "gate.txt").read_text().splitlines()
    assert gate_lines == ["no-such-pair: FAILED (exit code 2)", f"{PAIR}: passed"]
    assert outputs.read_text().splitlines()[-1] == "failed=no-such-pair"
