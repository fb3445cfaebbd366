"""Pair files: every table parsed into one frozen Pair; every bad field refused, naming file, key and expectation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from parity.checks.base import Tolerance
from parity.exceptions import ConfigError
from parity.pairs import PAIRS_DIR, Launch, ResumeProtocol, Side, load_pair

from conftest import REPO

SIDES = """
[baseline]
command = ["{python}", "train.py", "--steps", "{steps}"]
[candidate]
command = ["{python}", "train.py", "--steps", "{steps}", "--lr", "2e-3"]
"""


def _pair_file(tmp_path: Path, text: str, name: str = "p") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_every_bundled_pair_parses():
    names = [load_pair(p).name for p in sorted(PAIRS_DIR.glob("*.toml"))]
    assert "toy-warmup" in names and "toy-resume" in names and len(names) == len(set(names))


def test_every_table_lands_in_one_typed_pair(tmp_path):
    path = _pair_file(tmp_path, """
[pair]
name = "all-tables"
ignore_args = ["out"]
default_status = "identical"
[baseline]
command = ["{python}", "train.py", "--steps", "{steps}", "--out", "{out}"]
seed = 3
steps = 7
env = { OMP_NUM_THREADS = 1 }
device_args = { cuda = ["--big"] }
[candidate]
command = "python train.py --steps {steps}"
[[expect]]
check = "lr_schedule"
status = "DIFFERENT"
reason = "warmup"
[tolerance]
loss = "4ulp"
grad_norm = 1e-5
lr_schedule = "0.1%"
[golden]
dir = "stored"
[resume]
total = 10
splits = [4]
checkpoint = "{ckpt_dir}/s{at}.pt"
run = ["{python}", "train.py", "--steps", "{stop_at}"]
resume = ["{python}", "train.py", "--resume", "{ckpt}"]
seed = 5
expect_exact = true
[[toggle]]
name = "lr"
baseline = ["--lr", "1e-3"]
candidate = ["--lr", "2e-3"]
[metrics]
file = "{out}/m.jsonl"
keys = ["val"]
""")
    pair = load_pair(path)
    assert pair.name == "all-tables" and pair.ignore_args == frozenset({"out"}) and pair.default_status == "IDENTICAL"
    assert pair.baseline.seed == 3 and pair.baseline.steps == {"cpu": 7, "cuda": 7}
    assert pair.baseline.env == {"OMP_NUM_THREADS": "1"} and pair.baseline.device_args == {"cuda": ("--big",)}
    assert pair.candidate.command == ("python", "train.py", "--steps", "{steps}")
    assert pair.tolerances == {"loss": Tolerance(ulps=4), "grad_norm": Tolerance(rel=1e-5), "lr_schedule": Tolerance(rel=1e-3)}
    assert pair.golden.dir.name == "stored"
    assert pair.resume.seed == 5 and pair.resume.splits == (4,) and pair.resume.expect_exact is True
    assert [t.name for t in pair.toggles] == ["lr"] and pair.metrics.keys == ("val",)
    assert [e.check for e in pair.gated()] == ["config", "step_order", "model", "data", "train_mode", "loss",
                                               "grad_norm", "lr_schedule", "params", "optimizer_state"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.name = "other"  # type: ignore[misc]


def test_sides_and_resume_share_one_launch_declaration():
    """seed, env, cwd and deterministic are declared once, in Launch."""
    launch = {f.name for f in dataclasses.fields(Launch)}
    assert launch == {"cwd", "env", "seed", "deterministic"}
    for cls in (Side, ResumeProtocol):
        assert issubclass(cls, Launch)
        own = set(cls.__annotations__)
        assert not own & launch, f"{cls.__name__} re-declares {own & launch}"


@pytest.mark.parametrize("text,message", [
    ("[pair]\nnmae = 'x'\n", "[pair].nmae: unknown key"),
    ("[pairs]\nname = 'x'\n", "[pairs]: unknown table"),
    (SIDES + "[[expect]]\ncheck = 'losss'\nstatus = 'DIFFERENT'\n", "[[expect]] #1.check: expected a check name"),
    (SIDES + "[[expect]]\ncheck = 'loss'\nstatus = 'SAME'\n", "[[expect]] #1.status: expected one of IDENTICAL"),
    (SIDES + "[tolerance]\nparams = '1e-3'\n", "[tolerance].params: unknown key (known: loss, grad_norm, lr_schedule)"),
    (SIDES + "[tolerance]\nloss = '-2ulp'\n", "[tolerance].loss: expected a tolerance"),
    (SIDES + "[tolerance]\nloss = 'nan'\n", "finite number >= 0"),
    ("[baseline]\ncommand = ['{python}', '{stepz}']\n[candidate]\ncommand = ['x']\n", "[baseline].command: expected placeholders"),
    ("[baseline]\ncommand = 'x'\nseed = -1\n[candidate]\ncommand = ['x']\n", "[baseline].seed: expected an integer >= 0, got -1"),
    ("[baseline]\ncommand = 'x'\nsteps = { cpu = 3, tpu = 1 }\n[candidate]\ncommand = ['x']\n", "[baseline].steps: expected"),
    ("[baseline]\ncommand = 'x'\n", "both [baseline] and [candidate]"),
    ("[candidate]\ncommand = 'x'\n[baseline]\nseed = 0\n", "[baseline].command: missing"),
    (SIDES + "[[toggle]]\nname = 'lr'\nbaseline = '--lr 1'\n", "[[toggle]] #1.baseline: expected a list of strings"),
    (SIDES + "[golden]\ndir = 3\n", "[golden].dir: expected a string, got 3"),
    ("[resume]\ntotal = 10\nsplits = [4]\nrun = ['x']\nresume = ['y']\n", "[resume].checkpoint: missing"),
    ("[resume]\ntotal = 10\nsplits = [4]\ncheckpoint = 'c'\nrun = ['{stop}']\nresume = ['y']\n", "[resume].run: expected placeholders"),
])
def test_bad_field_is_refused_naming_file_key_and_expectation(tmp_path, text, message):
    path = _pair_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_pair(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_every_bad_field_is_listed_at_once(tmp_path):
    path = _pair_file(tmp_path, SIDES + "[pair]\nrepeat = 'yes'\ndescription = 1\n[tolerance]\nloss = 'x'\n")
    with pytest.raises(ConfigError) as caught:
        load_pair(path)
    text = str(caught.value)
    assert all(key in text for key in ("[pair].repeat", "[pair].description", "[tolerance].loss")), text


def test_commands_need_the_tables_they_use(tmp_path):
    resume_only = load_pair(_pair_file(tmp_path, "[pair]\nname = 'r'\n"))
    with pytest.raises(ConfigError, match="missing \\[baseline\\] and \\[candidate\\]"):
        resume_only.sides()
    with pytest.raises(ConfigError, match="no \\[resume\\] table"):
        resume_only.resume_protocol()


def test_bad_pair_file_is_one_line_exit_2(tmp_path):
    path = _pair_file(tmp_path, SIDES + "[[expect]]\ncheck = 'losss'\nstatus = 'DIFFERENT'\n")
    proc = subprocess.run([sys.executable, "-m", "parity", "gate", "--pair", str(path)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"{path}: [[expect]] #1.check: expected a check name" in proc.stderr
