"""The command line: help texts, argument mapping, and one subprocess run per exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import cli
from parity.checks.base import Tolerance
from parity.pairs import load_pair

from conftest import PAIR_RUNS, REPO, record_toy_in_process, side_table

SUBCOMMANDS = ["record", "compare", "report", "gate", "golden", "calibrate", "resume-check", "audit", "ablate", "attribute", "features", "bisect",
               "locate"]


def _parity(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_help_with_an_example(sub, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([sub, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "example" in out and "Exit codes" in out


def test_public_flags_are_frozen():
    """Adding or removing a flag is a deliberate change: update this list with the README."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "subcommand").choices
    flags = {name: sorted(o for a in p._actions for o in a.option_strings) for name, p in subparsers.items()}
    assert flags["record"] == sorted(["--deterministic", "--force", "--level", "--out", "--seed", "-h", "--help"])
    assert flags["compare"] == sorted(["--all-ranks", "--format", "--ignore-arg", "--rank", "--repeat", "--sharded", "--tolerance",
                                       "-o", "--output", "-h", "--help"])
    assert flags["gate"] == sorted(["--device", "--format", "--golden", "--pair", "--require-clean", "--runs-dir", "--steps",
                                    "--update-golden", "-h", "--help"])
    assert flags["golden"] == sorted(["--device", "--pair", "--runs-dir", "--steps", "-h", "--help"])
    assert flags["calibrate"] == sorted(["--device", "--format", "--jobs", "--pair", "--repeats", "--runs-dir", "--steps",
                                         "-h", "--help"])
    assert flags["report"] == sorted(["--attribute", "--baseline", "--candidate", "--command", "--device", "--explain",
                                      "--format", "--jobs", "--pair", "--repeat", "--require-clean", "--runs-dir", "--steps",
                                      "--tolerance", "-o", "--output", "-h", "--help"])
    assert flags["resume-check"] == sorted(["--controls", "--device", "--format", "--no-double", "--pair", "--runs-dir",
                                            "--splits", "-o", "--output", "-h", "--help"])
    assert flags["audit"] == sorted(["--against", "--format", "--impact", "--trace", "--trust-checkpoint", "-o", "--output",
                                     "-h", "--help"])
    assert flags["ablate"] == sorted(["--device", "--format", "--jobs", "--pair", "--runs-dir", "--steps", "-o", "--output",
                                      "-h", "--help"])
    assert flags["attribute"] == sorted(["--device", "--format", "--jobs", "--pair", "--runs-dir", "--steps", "-o",
                                         "--output", "-h", "--help"])
    assert flags["features"] == sorted(["--device", "--format", "--no-resume", "--no-test-mode", "--pair", "--runs-dir",
                                        "--same-stream-pair", "--steps", "--test-timeout", "--throughput", "-o", "--output",
                                        "-h", "--help"])
    assert flags["bisect"] == sorted(["--bad", "--device", "--format", "--good", "--pair", "--repo", "--runs-dir", "--side",
                                      "--steps", "--tolerance", "-o", "--output", "-h", "--help"])
    assert flags["locate"] == sorted(["--device", "--env", "--format", "--jobs", "--pair", "--repeat", "--runs-dir", "--step",
                                      "--steps", "--strict-deterministic", "--try-settings", "-o", "--output", "-h", "--help"])
    assert set(flags) == set(SUBCOMMANDS)


@pytest.mark.parametrize("text,expected", [("loss:1e-6", Tolerance(rel=1e-6)), ("loss:0.1%", Tolerance(rel=1e-3)),
                                           ("loss:4ulp", Tolerance(ulps=4)), ("loss:bits", Tolerance())])
def test_tolerance_syntax(text, expected):
    assert cli.parse_tolerance(text) == expected


@pytest.mark.parametrize("text", ["loss", "params:1e-3", "loss:abc", "loss:xulp"])
def test_bad_tolerance_is_rejected(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="loss:"):
        cli.parse_tolerance(text)


def test_compare_maps_arguments_to_the_facade(monkeypatch, tmp_path):
    seen = {}

    def fake_compare(baseline, candidate, **kwargs):
        seen.update(kwargs, baseline=baseline, candidate=candidate)
        raise cli.ParityError("stop here")

    monkeypatch.setattr(cli.session, "compare_with_traces", fake_compare)
    code = cli.main(["compare", "A", "B", "--tolerance", "loss:2ulp", "--rank", "1", "--ignore-arg", "out"])
    assert code == cli.INVALID
    assert seen["baseline"] == "A" and seen["tolerance"] == Tolerance(ulps=2) and seen["rank"] == 1
    assert seen["ignore_args"] == frozenset({"out"})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Runs for the compare command line, recorded in this process (`parity record` has tests of its own)."""
    root = tmp_path_factory.mktemp("cli")
    for name, script in (("base", "train.py"), ("same", "variants/logging.py"), ("warm", "variants/warmup.py")):
        record_toy_in_process(root / name, script, "--steps", "6")
    return root


def test_exit_0_on_identical(two_runs):
    proc = _parity("compare", str(two_runs / "base"), str(two_runs / "same"), "--format", "json", "--ignore-arg", "ckpt_dir")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["verdict"] == "IDENTICAL" and data["first_divergence"] is None
    assert [c["name"] for c in data["checks"]] == ["config", "step_order", "model", "data", "train_mode", "loss",
                                                   "grad_norm", "lr_schedule", "params", "optimizer_state"]
    assert set(data["checks"][0]) >= {"name", "status", "first_divergent_step", "evidence"}


def test_exit_1_on_difference_with_report_file(two_runs, tmp_path):
    out = tmp_path / "r" / "report.md"
    proc = _parity("compare", str(two_runs / "base"), str(two_runs / "warm"), "-o", str(out), "--ignore-arg", "ckpt_dir")
    assert proc.returncode == 1
    text = out.read_text()
    assert "**Verdict: ❌ DIFFERENT**" in text and "step 0, channel `lr`" in text
    assert (tmp_path / "r" / "report-loss.png").exists() and not list(out.parent.glob(".report.md.*"))


@pytest.mark.parametrize("args,message", [
    (["compare", "no/such/dir", "no/such/dir"], "no such run directory"),
    (["record", "--out", "{tmp}/x"], "no command to record"),
    (["record", "--out", "{tmp}/x", "--", "definitely-not-a-program-xyz"], "no such program"),
    (["record", "--out", "{tmp}/x", "--level", "sometimes", "--", "true"], "--level"),
    (["report", "--pair", "no-such-pair"], "no pair file"),
    (["gate", "--pair", "{tmp}/bad.toml"], "invalid TOML"),
])
def test_exit_2_on_bad_input(args, message, tmp_path):
    (tmp_path / "bad.toml").write_text("[pair\nname=")
    proc = _parity(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_exit_2_on_corrupt_trace_names_file_and_line(two_runs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = (two_runs / "base" / "trace-rank0.jsonl").read_text().splitlines()
    (bad / "trace-rank0.jsonl").write_text("\n".join(good[:2] + ["{not json"] + good[2:]) + "\n")
    proc = _parity("compare", str(two_runs / "base"), str(bad))
    assert proc.returncode == 2 and "trace-rank0.jsonl:3:" in proc.stderr


def test_record_refuses_to_overwrite(two_runs):
    proc = _parity("record", "--out", str(two_runs / "base"), "--", sys.executable, "-c", "pass")
    assert proc.returncode == 2 and "--force" in proc.stderr


def test_gate_fails_and_prints_first_divergence(tmp_path):
    pair = tmp_path / "pairs" / "wrong.toml"
    pair.parent.mkdir()
    # toy-warmup's sides, recorded through the cache its tests and gate use: no trainer starts when they ran first.
    warmup = load_pair("toy-warmup")
    pair.write_text('[pair]\nname = "wrong-expectation"\nignore_args = ["ckpt_dir"]\n'
                    + side_table("baseline", warmup.baseline) + side_table("candidate", warmup.candidate)
                    + '[[expect]]\ncheck = "verdict"\nstatus = "IDENTICAL"\n')
    proc = _parity("gate", "--pair", str(pair), "--runs-dir", str(PAIR_RUNS))
    assert proc.returncode == 1
    assert "expected IDENTICAL, got DIFFERENT" in proc.stderr and "first divergence: step 0, channel lr" in proc.stderr


def test_audit_cli_json_and_bad_checkpoints(tmp_path, capsys):
    import torch

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    good = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, good)
    proc = _parity("audit", str(good), "--format", "json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0
    status = {c["category"]: c["status"] for c in data["categories"]}
    assert status["model"] == "saved" and status["optimizer"] == "saved" and status["rng_torch"] == "not_saved"
    # The bad checkpoints through cli.main in this process (exit 2 has its subprocess test above): an
    # exception that escaped main would fail the test as a traceback on the command line would.
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    capsys.readouterr()
    assert cli.main(["audit", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert "cut.pt" in err and err.count("\n") == 1
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"args": argparse_namespace()}, unsafe)
    assert cli.main(["audit", str(unsafe)]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    assert cli.main(["audit", str(unsafe), "--trust-checkpoint"]) == 0


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=0.1)
