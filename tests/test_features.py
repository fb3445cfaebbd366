"""parity features: the feature matrix of two runs, on the toy trainer with fixture artifacts and every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from parity import cli, session
from parity.capture.launch import record_command
from parity.features import build, checklist
from parity.features.matrix import DIFFERENT, IDENTICAL, NOT_CHECKED, ONLY_A, ONLY_B
from parity.features.schema import infer_schema, merge_schemas, schema_differences, validate

from conftest import toy_commands_recorded_in_process

TOY = Path(__file__).resolve().parent / "toy"
ROOT = TOY.parent.parent

#: The toy trainer with a `--test` flag: `--test` exits 0 before torch is imported (`--fail-test`: exit 3).
WRAPPER = f"""
import sys
if "--test" in sys.argv:
    sys.exit(3 if "--fail-test" in sys.argv else 0)
sys.path.insert(0, {str(TOY)!r})
import train

parser = train.build_parser()
parser.add_argument("--test", action="store_true")
parser.add_argument("--fail-test", action="store_true")
train.Trainer(parser.parse_args()).run()
"""


def _png(width: int = 4, height: int = 3) -> bytes:
    """A valid RGB PNG, written by hand (no Pillow needed to make one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    raw = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00")
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _metrics(n: int = 3, **extra: object) -> dict:
    return {"schema": "lm-metrics/1", "metrics": [{"step": i, "loss": 2.0 - i / 10, "tokens_per_second": 100.0 + i,
                                                   "tokens": 62 + i,
                                                   **extra} for i in range(n)]}


def _add_artifacts(run: Path) -> None:
    """The seed's output layout under {out}/lm: charts, the two JSON files, two three-file checkpoint sets."""
    viz, ckpt = run / "lm" / "training_viz", run / "lm" / "checkpoints"
    viz.mkdir(parents=True)
    ckpt.mkdir(parents=True)
    for name in ("training_step_000002.png", "training_step_000004.png", "training_latest.png"):
        (viz / name).write_bytes(_png())
    (viz / "metrics_history.json").write_text(json.dumps(_metrics()))
    (viz / "text_samples.json").write_text(json.dumps({"samples": [{"step": 2, "input": "a", "prediction": "b"}]}))
    for step in (2, 4):
        for suffix in ("", ".embeddings", ".decoder"):
            (ckpt / f"checkpoint_step_{step}.bin{suffix}").write_bytes(b"weights")


def _record(out: Path, *command: str) -> None:
    """Record the wrapped toy trainer in this process (with the run.json `parity record` writes)."""
    with toy_commands_recorded_in_process(also=(Path(command[0]),)):
        result = record_command([sys.executable, *command, "--steps", "3", "--ckpt-dir", str(out / "ckpt")], out,
                                seed=0, cwd=ROOT)
    assert result.returncode == 0


def _edit_trace(run: Path, edit) -> None:
    """Rewrite each record of the run's trace through `edit(record) -> record`."""
    path = run / "trace-rank0.jsonl"
    path.write_text("".join(json.dumps(edit(json.loads(line))) + "\n" for line in path.read_text().splitlines()))


def _without_test_flag(record: dict) -> dict:
    if record.get("key") == "argparse":
        record["value"] = {k: v for k, v in record["value"].items() if k not in ("test", "fail_test")}
    return record


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The toy run recorded once through a wrapper with --test (`wrapped`), and `plain`: the same run as
    train.py without the flag would record it (its argparse and command edited), each with the seed's files."""
    root = tmp_path_factory.mktemp("features")
    (root / "wrapper.py").write_text(WRAPPER)
    _record(root / "wrapped", str(root / "wrapper.py"))
    shutil.copytree(root / "wrapped", root / "plain")
    _edit_trace(root / "plain", _without_test_flag)
    provenance = json.loads((root / "plain" / "run.json").read_text())
    provenance["command"][1] = str(TOY / "train.py")
    (root / "plain" / "run.json").write_text(json.dumps(provenance))
    for run in ("wrapped", "plain"):
        _add_artifacts(root / run)
    return root


@pytest.fixture
def runs(recorded, tmp_path):
    """Fresh copies to damage: `a` and `a2` (the same run twice) and `b` (the plain trainer)."""
    shutil.copytree(recorded / "wrapped", tmp_path / "a")
    shutil.copytree(recorded / "wrapped", tmp_path / "a2")
    shutil.copytree(recorded / "plain", tmp_path / "b")
    return tmp_path


def _rows(matrix) -> dict[str, object]:
    return {r.feature: r for r in matrix.rows}


def _matrix(a: Path, b: Path, **options):
    return build.build_matrix(a, b, **{"test_mode": False, **options})


# -- JSON schema ----------------------------------------------------------------------------------

def test_schema_infer_merge_validate():
    a = infer_schema({"metrics": [{"step": 0, "loss": 2.5}, {"step": 1, "loss": None, "lr": 0.1}]})
    assert a["properties"]["metrics"]["items"]["required"] == ["loss", "step"]  # lr is in one record only
    assert a["properties"]["metrics"]["items"]["properties"]["loss"]["type"] == ["null", "number"]
    assert validate({"metrics": [{"step": 3, "loss": 1.0}]}, a) == []
    problems = validate({"metrics": [{"step": "3", "extra": 1}]}, a)
    assert problems == ["$.metrics[0].loss: missing", "$.metrics[0].extra: not in the schema",
                        "$.metrics[0].step: string, expected number"]
    assert validate([1], a) == ["$: array, expected object"]
    merged = merge_schemas(infer_schema({"x": 1}), infer_schema({"x": "s", "y": True}))
    assert merged["required"] == ["x"] and merged["properties"]["x"]["type"] == ["number", "string"]
    assert schema_differences(infer_schema({"x": 1}), infer_schema({"x": 1, "y": [1]})) == \
        ["$.y: absent -> array", "$.y[]: absent -> number"]


# -- the matrix on good runs ----------------------------------------------------------------------

def test_same_run_twice_is_identical_with_every_section(runs):
    matrix = _matrix(runs / "a", runs / "a2")
    assert matrix.identical, [(r.feature, r.status, r.evidence) for r in matrix.differences]
    rows = _rows(matrix)
    assert {r.section for r in matrix.rows} == {"Core Training", "Visualization", "Export & Persistence", "Configuration",
                                                "Dataset Handling", "Numerics", "Checklist"}
    assert rows["chart `lm/training_viz/training_step_N.png`"].a == "2 PNGs (numbered 2, 4), 4x3"
    assert rows["checkpoint set `lm/checkpoints/checkpoint_step_N.bin`"].a.startswith("2 sets (numbered 2, 4): "
                                                                                       ".bin + .decoder + .embeddings")
    assert rows["metric `loss`"].status == IDENTICAL
    assert rows["throughput logged (tokens/s)"].a.startswith("101.0 (tokens_per_second, median)")
    assert rows["tokens per step (logged)"].a == "62-64, median 63 (`tokens`)"
    assert rows["--ckpt-dir"].a == "\"PosixPath('{out}/ckpt')\""  # the run's own folder, written {out}
    assert rows["JSON export `lm/training_viz/metrics_history.json` against A's schema"].status == IDENTICAL
    assert rows["loss per step (exact bits)"].status == IDENTICAL
    assert rows["memory usage"].status == IDENTICAL


def test_two_trainers_differ_by_flags_and_files(runs):
    (runs / "b" / "lm" / "training_viz" / "training_latest.png").unlink()
    (runs / "b" / "lm" / "training_viz" / "metrics_history.json").write_text(json.dumps(_metrics(accuracy=0.5)))
    (runs / "a" / "lm" / "run.log").write_text("log line\n")
    (runs / "a" / "lm" / "spm.model").write_bytes(b"x" * 807_026)  # a file of one name, 9 bytes apart
    (runs / "b" / "lm" / "spm.model").write_bytes(b"x" * 807_035)
    rows = _rows(_matrix(runs / "a", runs / "b"))
    tokenizer = rows["file `lm/spm.model`"]
    assert tokenizer.status == DIFFERENT and "sizes differ: 807,026 vs 807,035 bytes" in tokenizer.evidence
    assert (rows["--test"].status, rows["--test"].b) == (ONLY_A, "no such flag")
    assert rows["chart `lm/training_viz/training_latest.png`"].status == ONLY_A
    assert rows["file `lm/run.log`"].status == ONLY_A
    assert rows["metric `accuracy`"].status == ONLY_B
    assert rows["loss per step (exact bits)"].status == IDENTICAL  # the same trainer underneath
    validation = rows["JSON export `lm/training_viz/metrics_history.json` against A's schema"]
    assert validation.status == DIFFERENT and "$.metrics[0].accuracy: not in the schema" in validation.evidence
    schema_row = rows["JSON `lm/training_viz/metrics_history.json`"]
    assert schema_row.status == DIFFERENT and "$.metrics[].accuracy: absent -> number" in schema_row.evidence


def test_numerics_name_the_first_divergence(runs):
    def later_loss(record: dict) -> dict:
        if record.get("type") == "step" and record["step"] >= 1:
            record["losses"] = [{"bits": "40000000", "dtype": "float32", "value": 2.0}]
        return record

    _edit_trace(runs / "a2", later_loss)
    rows = _rows(_matrix(runs / "a", runs / "a2"))
    assert rows["loss per step (exact bits)"].status == DIFFERENT and rows["loss per step (exact bits)"].b == "differs from step 1"
    assert rows["tokens seen, in order (data digests per step)"].status == IDENTICAL
    assert rows["first divergence"].b == "step 1, loss" and rows["first divergence"].status == DIFFERENT
    assert rows["last loss"].b.startswith("2.0 (step 2, bits 40000000)") and rows["first loss"].status == IDENTICAL


# -- the checklist --------------------------------------------------------------------------------

def test_test_mode_runs_the_flag_and_reports_exit_codes(runs):
    rows = _rows(build.build_matrix(runs / "a", runs / "b", test_timeout=60))
    row = rows["test mode execution"]
    assert row.status == ONLY_A and row.a.startswith("exit 0 in ") and row.b == "no --test flag"
    run = checklist.run_test_mode(runs / "a", 60)
    assert run.command[-1] == "--test" and str(runs / "a") not in " ".join(run.command)  # a scratch output folder
    provenance = json.loads((runs / "a2" / "run.json").read_text())
    provenance["command"].append("--fail-test")
    (runs / "a2" / "run.json").write_text(json.dumps(provenance))
    row = _rows(build.build_matrix(runs / "a", runs / "a2", test_timeout=60))["test mode execution"]
    assert row.status == DIFFERENT and row.b.startswith("exit 3 in ")


def test_checkpoint_loading_row_from_a_resume_result():
    split = SimpleNamespace(at=2, exact=True, first_divergent_step=None, channel=None)
    result = SimpleNamespace(exact=True, splits=[split], double=[],
                             protocol=SimpleNamespace(path=Path("p.toml"), run=("python", "train.py", "--steps")))
    row = checklist.checkpoint_loading_row(result, (True, False))
    assert (row.status, row.a, row.b) == (ONLY_A, "exact (splits 2: exact)", "not declared")
    assert checklist.checkpoint_loading_row(None, (False, False)).status == NOT_CHECKED


def test_pair_mode_records_resumes_and_reproduces(runs, monkeypatch):
    pair_file = runs / "p.toml"
    pair_file.write_text('[baseline]\ncommand = ["{python}", "w.py"]\n[candidate]\ncommand = ["{python}", "t.py"]\n'
                         '[resume]\ntotal = 4\nsplits = [2]\ncheckpoint = "{ckpt_dir}/s{at}.pt"\n'
                         'run = ["{python}", "w.py", "{stop_at}"]\nresume = ["{python}", "w.py", "{ckpt}"]\n')
    monkeypatch.setattr(session, "run_pair", lambda *a, **k: SimpleNamespace(baseline=runs / "a", candidate=runs / "b"))
    split = SimpleNamespace(at=2, exact=False, first_divergent_step=3, channel="params")
    monkeypatch.setattr(session, "resume_check", lambda pair, **k: SimpleNamespace(
        exact=False, splits=[split], double=[], protocol=pair.resume))
    matrix = session.features(pair=str(pair_file), test_mode=False, same_stream_pair=str(pair_file),
                              invocation=["features", "--pair", str(pair_file)])
    rows = _rows(matrix)
    assert rows["loss per step (exact bits) [p]"].status == IDENTICAL and matrix.numerics["same_stream"]["pair"] == "p"
    row = rows["checkpoint loading (resume-check)"]
    assert (row.status, row.a, row.b) == (ONLY_A, "NOT exact (splits 2: differs from step 3 (params))", "not declared")
    assert matrix.labels[0].startswith("baseline: ") and matrix.reproduce[-1].startswith("parity features --pair")


# -- bad input: broken artifacts are rows, unreadable sides exit 2 ---------------------------------

def _truncate_json(run: Path) -> str:
    path = run / "lm" / "training_viz" / "metrics_history.json"
    path.write_text(path.read_text()[:40])
    return "corrupt: invalid JSON at line 1"


def _not_a_png(run: Path) -> str:
    (run / "lm" / "training_viz" / "training_latest.png").write_text("<html>error</html>")
    return "corrupt: not a PNG"


def _cut_png(run: Path) -> str:
    path = run / "lm" / "training_viz" / "training_latest.png"
    path.write_bytes(path.read_bytes()[:40])
    return "corrupt: 4x3 PNG that does not decode"


def _empty_png(run: Path) -> str:
    (run / "lm" / "training_viz" / "training_latest.png").write_bytes(b"")
    return "corrupt: empty file"


def _missing_member(run: Path) -> str:
    (run / "lm" / "checkpoints" / "checkpoint_step_4.bin.decoder").unlink()
    return "incomplete: missing checkpoint_step_4.bin.decoder"


def _missing_main(run: Path) -> str:
    (run / "lm" / "checkpoints" / "checkpoint_step_4.bin").unlink()
    return "incomplete: checkpoint_step_4.bin itself is missing"


def _empty_member(run: Path) -> str:
    (run / "lm" / "checkpoints" / "checkpoint_step_2.bin.embeddings").write_bytes(b"")
    return "corrupt: empty .embeddings"


@pytest.mark.parametrize("damage", [_truncate_json, _not_a_png, _cut_png, _empty_png, _missing_member, _missing_main,
                                    _empty_member])
def test_broken_artifacts_are_rows_not_crashes(runs, damage, capsys):
    expected = damage(runs / "a2")
    code = cli.main(["features", str(runs / "a"), str(runs / "a2"), "--no-test-mode", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["status"] == "different"
    broken = [r for r in data["rows"] if expected in r["b"]]
    assert broken and all(r["status"] == DIFFERENT for r in broken), [r["b"] for r in data["rows"]]


def test_markdown_output_file_and_reproduce_block(runs):
    out = runs / "report" / "features.md"
    proc = subprocess.run([sys.executable, "-m", "parity", "features", str(runs / "a"), str(runs / "a2"), "--no-test-mode",
                           "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "| Feature | A | B | Status | Evidence |" in text and "| **Numerics** | | | | |" in text
    assert "## Reproduce" in text and f"parity features {runs / 'a'}" in text


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nowhere", "no such run directory"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "not a run directory: it holds no trace-rank*.jsonl"),
    (lambda p: (p / "bad").mkdir() or (p / "bad" / "trace-rank0.jsonl").write_text("{oops\n") and p / "bad",
     "trace-rank0.jsonl:1"),
])
def test_unreadable_side_exits_2_with_one_line(runs, make, message):
    side = make(runs)
    proc = subprocess.run([sys.executable, "-m", "parity", "features", str(runs / "a"), str(side), "--no-test-mode"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr


def test_usage_errors_exit_2(capsys):
    assert cli.main(["features", "only-one"]) == 2
    assert "give two run directories" in capsys.readouterr().err
    assert cli.main(["features", "x", "y", "--pair", "toy-logging"]) == 2
    assert cli.main(["features", "x", "y", "--throughput", "/nonexistent.json"]) == 2


def test_the_resume_protocol_is_matched_to_its_side_by_script_or_module() -> None:
    from parity.session import _entry_point

    assert _entry_point(["{python}", "-m", "implementations.lm_chunked.train", "--steps", "3"]) == "implementations.lm_chunked.train"
    assert _entry_point(["{python}", "tests/toy/train.py", "--steps", "3"]) == "tests/toy/train.py"
    assert _entry_point(["torchrun", "--nproc-per-node", "2"]) is None
