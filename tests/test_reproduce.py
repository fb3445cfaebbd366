"""A report's Reproduce block re-creates it: run in a fresh copy of the project, same verdict, same loss bits."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parity.pairs import load_pair
from parity.report.reproduce import INSTALL_LINE, parity_line, record_lines, reproduce_block
from parity.trace.reader import load_run

REPO = Path(__file__).resolve().parent.parent
TOY_REPORT = ["report", "--pair", "toy-warmup", "--steps", "6", "-o", "out/r.md"]
TOY_COMPARE = ["compare", "runs/toy-warmup/baseline", "runs/toy-warmup/candidate", "-o", "out/c.md"]


def _copy_project(dest: Path) -> Path:
    """What a fresh clone holds: every tracked or non-ignored file of the working tree (others' edits included)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _shell_env(project: Path) -> dict[str, str]:
    # The clone's own parity package, not the editable install of the checkout the tests run from.
    return {**os.environ, "PYTHONPATH": str(project),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _bash(line: str, project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=project, env=_shell_env(project), capture_output=True, text=True,
                          timeout=300)


def _block(report: str) -> list[str]:
    section = report.split("## Reproduce", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()


def _verdict(report: str) -> str:
    return re.search(r"\*\*Verdict: \S+ (\w+)\*\*", report).group(1)


def _loss_bits(run_dir: Path) -> list[list[str]]:
    return [[loss["bits"] for loss in step["losses"]] for step in load_run(run_dir).primary.steps]


def _side_bits(project: Path) -> dict[str, list[list[str]]]:
    return {side: _loss_bits(project / "runs" / "toy-warmup" / side) for side in ("baseline", "candidate")}


def _fake_provenance(side, out: Path) -> dict:
    """run.json as recording a pair side writes it, without running anything."""
    return {"command": side.render(steps=30, device="cpu", out=out), "cwd": str(side.cwd), "out": str(out),
            "seed": side.seed, "deterministic": side.deterministic, "level": "full", "skip_loads": [],
            "env": dict(side.env), "inherited_env": {}, "python": sys.executable, "returncode": 0,
            "setup": {"command": side.render(steps=30, device="cpu", out=out, template=side.setup),
                      "cwd": str(side.cwd), "env": dict(side.env)}}


def _assert_portable(text: str) -> None:
    for machine_path in ("/work/", str(REPO), str(Path.home()), sys.executable):
        assert machine_path not in text, f"{machine_path!r} in the Reproduce block:\n{text}"


def test_pair_block_holds_setup_env_and_no_machine_path():
    pair = load_pair("histocc-occpast")
    lines = []
    for side in (pair.baseline, pair.candidate):
        out = REPO / "runs" / pair.name / side.name
        lines += record_lines(out, _fake_provenance(side, out), REPO)
    lines.append(parity_line(["report", "--pair", pair.name, "-o", str(REPO / "reports" / "histocc-vs-occpast.md")],
                             REPO, REPO))
    text = "\n".join(lines)
    _assert_portable(text)
    assert ("mkdir -p runs/histocc-occpast/baseline && OMP_NUM_THREADS=1 python -m reference.histocc.make_data "
            "--out runs/histocc-occpast/baseline/data.csv") in text
    assert ("OMP_NUM_THREADS=1 parity record --out runs/histocc-occpast/candidate --seed 0 --level full -- "
            "python -m implementations.occpast.finetune --dataset runs/histocc-occpast/candidate/data.csv") in text
    assert lines[-1] == "parity report --pair histocc-occpast -o reports/histocc-vs-occpast.md"


def test_side_outside_the_root_folder_runs_in_a_subshell(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "sub").mkdir()
    out = tmp_path / "runs" / "a"
    provenance = {"command": [sys.executable, "train.py", "--ckpt=/elsewhere/runs/a/ckpt"], "cwd": str(tmp_path / "sub"),
                  "out": "/elsewhere/runs/a", "seed": None, "level": "every:5", "env": {"A": "x y"},
                  "inherited_env": {"OMP_NUM_THREADS": "2"}, "skip_loads": ["optimizer"]}
    (line,) = record_lines(out, provenance, tmp_path)
    assert line == ("(cd sub && A='x y' OMP_NUM_THREADS=2 PARITY_SKIP_LOADS=optimizer parity record --out ../runs/a "
                    "--level every:5 -- python train.py --ckpt=../runs/a/ckpt)")


def test_compare_block_records_each_run_from_its_run_json(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    (tmp_path / "runs" / "a" / "run.json").write_text(
        '{"command": ["python", "t.py"], "cwd": "%s", "seed": 3, "deterministic": true, "level": "full"}' % tmp_path)
    lines = reproduce_block([tmp_path / "runs" / "a", tmp_path / "runs" / "b"],
                            ["compare", str(tmp_path / "runs" / "a"), "runs/b"], invoked_in=tmp_path)
    assert lines[0] == "parity record --out runs/a --seed 3 --deterministic --level full -- python t.py"
    assert lines[1].startswith("# runs/b: no run.json")
    assert lines[2] == "parity compare runs/a runs/b"


@pytest.mark.slow
def test_reproduce_block_recreates_the_report_in_a_fresh_clone(tmp_path):
    original = _copy_project(tmp_path / "original")
    made = _bash("parity " + " ".join(TOY_REPORT), original)
    assert made.returncode in (0, 1), made.stderr
    report = (original / "out" / "r.md").read_text()
    compared = _bash("parity " + " ".join(TOY_COMPARE), original)
    assert compared.returncode in (0, 1), compared.stderr
    comparison = (original / "out" / "c.md").read_text()
    assert "Generated by `parity compare`" in comparison
    block, compare_block = _block(report), _block(comparison)
    for text in (block, compare_block):
        _assert_portable("\n".join(text))
        assert str(tmp_path) not in "\n".join(text)
    # Both blocks record the same runs the same way; each ends with the command that made it.
    record = [line for line in block if "parity record" in line]
    assert len(record) == 2 and record == [line for line in compare_block if "parity record" in line]
    assert block[-1] == "parity " + " ".join(TOY_REPORT) and compare_block[-1] == "parity " + " ".join(TOY_COMPARE)
    assert block[0] == INSTALL_LINE

    clone = _copy_project(tmp_path / "clone")
    steps = [line for line in block[1:-1] if not line.startswith("#")]
    for line in steps:
        done = _bash(line, clone)
        assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
    assert _side_bits(clone) == _side_bits(original)
    done = _bash(block[-1], clone)
    assert done.returncode == made.returncode, done.stderr[-2000:]
    assert _side_bits(clone) == _side_bits(original)
    assert _verdict((clone / "out" / "r.md").read_text()) == _verdict(report)
