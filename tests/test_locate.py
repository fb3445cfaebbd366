"""parity locate: deep capture of one step and the walk to the first differing op, on planted toy changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules import module as nn_module

from parity import cli, session
from parity.capture.deep import DeepCapture, from_environment
from parity.capture.launch import record_command
from parity.capture.runtime import record
from parity.explain import locate as loc
from parity.trace import deep as ds

from conftest import toy_commands_recorded_in_process

TOY = Path(__file__).parent / "toy"


def _record(out: Path, script: str, steps: int) -> Path:
    result = record_command([sys.executable, str(TOY / script), "--steps", str(steps)], out, seed=0)
    assert result.returncode == 0, result
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Recorded in this process (record_command's run.json as launched); locate's deep re-runs are launched.
    root = tmp_path_factory.mktemp("locate")
    with toy_commands_recorded_in_process():
        return {"gelu": _record(root / "gelu", "variants/gelu.py", 2),
                "tanh": _record(root / "tanh", "variants/gelu_tanh_layer2.py", 2),
                "shuffled": _record(root / "shuffled", "variants/shuffled_sum.py", 3), "root": root}


def _locate_json(argv: list[str], tmp_path: Path) -> tuple[int, dict]:
    out = tmp_path / "locate.json"
    code = cli.main(["locate", *argv, "--runs-dir", str(tmp_path / "runs"), "--format", "json", "-o", str(out)])
    return code, json.loads(out.read_text())


@pytest.mark.slow
def test_swapped_activation_is_named_with_its_module_and_op(runs: dict[str, Path], tmp_path: Path) -> None:
    code, found = _locate_json([str(runs["gelu"]), str(runs["tanh"])], tmp_path)
    assert code == cli.DIFFERENCES
    assert found["step"] == 0 and found["status"] == "LOCATED"
    where = found["deep"]["location"]
    assert where["candidate"]["module"] == "act2" and where["candidate"]["op"] == "aten.gelu.default"
    assert where["candidate"]["phase"] == ds.PHASE_FORWARD
    assert where["cause"] == loc.CHANGED_CALL and "approximate='tanh'" in where["detail"]
    assert where["module"]["module"] == "act2"
    (difference,) = where["differences"]
    assert difference["shape"] == [32, 64] and 0 < difference["max_abs"] < 1e-3
    assert found["reproduce"], "the report says how to reproduce it"
    # The saved JSON is what `parity report --explain` reads: its contract fields, rendered.
    from parity.report.explanation import check_explanation, explanation_lines

    assert (found["kind"], found["module"], found["op"], found["phase"]) == ("locate", "act2", "aten.gelu.default",
                                                                             ds.PHASE_FORWARD)
    check_explanation(found, "locate.json")
    assert any("aten.gelu.default" in line for line in explanation_lines([found]))


@pytest.mark.slow
def test_shuffled_accumulation_is_same_inputs_different_outputs(runs: dict[str, Path], tmp_path: Path) -> None:
    result = session.locate(baseline=str(runs["shuffled"]), repeat=True, runs_dir=tmp_path / "runs")
    assert result.located and result.step == 2 and result.step_source == "first divergence"
    where = result.deep.location
    assert where.cause == loc.SAME_INPUTS
    assert where.record.name == "toy.scatter_sum.default" and where.record.module == "head"
    assert where.record.phase == ds.PHASE_FORWARD and "shuffled_sum.py" in where.record.caller
    assert where.differences[0].differing_samples > 0
    from parity.report.locate_report import render_locate_markdown

    text = render_locate_markdown(result)
    assert "same inputs, different outputs: nondeterministic kernel or changed op" in text
    assert "`toy.scatter_sum.default` in module `head`, forward, step 2" in text


def test_identical_runs_have_no_differing_op(runs: dict[str, Path], tmp_path: Path) -> None:
    code, found = _locate_json([str(runs["gelu"]), str(runs["gelu"])], tmp_path)
    assert code == cli.OK and found["status"] == "NO_DIFFERING_OP" and found["step"] is None


@pytest.mark.parametrize("argv, message", [
    (["{root}/missing", "{root}/gelu"], "not a run directory"),
    (["{root}/gelu"], "give BASELINE and CANDIDATE"),
    (["{root}/gelu", "{root}/gelu", "--step", "7"], "--step 7: "),
    (["{root}/gelu", "{root}/gelu", "--env", "NOEQUALS"], "--env 'NOEQUALS': write KEY=VALUE"),
])
def test_bad_input_is_one_line_and_exit_2(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
                                          argv: list[str], message: str) -> None:
    argv = [a.format(root=runs["root"]) for a in argv]
    assert cli.main(["locate", *argv, "--runs-dir", str(tmp_path / "runs")]) == cli.INVALID
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def _global_hooks() -> int:
    return sum(len(d) for d in (nn_module._global_forward_hooks, nn_module._global_forward_pre_hooks,
                                nn_module._global_backward_hooks, nn_module._global_backward_pre_hooks))


def _train(directory: Path, deep_step: int | None, steps: int = 3,
           model: nn.Module | None = None) -> tuple[list[int], DeepCapture | None]:
    """A tiny in-process training under parity.record; the count of global module hooks at each step."""
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    counts = []
    with record(directory) as capture:
        deep = DeepCapture(capture.recorder, deep_step).install() if deep_step is not None else None
        capture.deep = deep
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            counts.append(_global_hooks())
            loss.backward()
            optimizer.step()
        counts.append(_global_hooks())
    return counts, deep


def test_deep_capture_installs_nothing_when_off_and_only_for_its_step(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARITY_DEEP_STEP", raising=False)
    assert from_environment(object()) is None  # type: ignore[arg-type]
    plain, _ = _train(tmp_path / "plain", None)
    assert len(set(plain)) == 1, "recording alone keeps one set of global hooks throughout"
    deep_counts, deep = _train(tmp_path / "deep", 1)
    assert deep.done and not deep.armed
    assert deep_counts[0] == deep_counts[2] == deep_counts[3] == plain[0], "no extra hooks outside step 1"
    assert deep_counts[1] > plain[0], "module hooks while step 1 runs"
    again, _ = _train(tmp_path / "again", 1)
    a, b = ds.read_deep(tmp_path / "deep" / "deep-rank0.jsonl"), ds.read_deep(tmp_path / "again" / "deep-rank0.jsonl")
    assert a.complete and a.step == 1 and {r.kind for r in a.records} == set(ds.KINDS)
    assert {r.phase for r in a.records} >= {ds.PHASE_START, ds.PHASE_FORWARD, ds.PHASE_BACKWARD, ds.PHASE_NO_GRAD}
    assert loc.locate_records(a.records, b.records) is None, "identical runs match op for op"
    backward_ops = {r.module for r in a.records if r.kind == ds.KIND_OP and r.phase == ds.PHASE_BACKWARD}
    assert {"0", "2"} <= backward_ops, "backward ops are attributed to the modules that run them"


def test_a_module_that_returns_its_input_takes_no_backward_ops(tmp_path: Path) -> None:
    """Dropout with p=0 returns its input tensor itself: its gradient "end" hook fires before its "start",
    which once left it open for the rest of the backward and took the next module's ops (the H200 run
    named attention's backward kernel as `dropout2`'s)."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Dropout(0.0), nn.Linear(8, 2))
    _, deep = _train(tmp_path / "deep", 0, steps=1, model=model)
    records = ds.read_deep(tmp_path / "deep" / "deep-rank0.jsonl").records
    backward_ops = [r.module for r in records if r.kind == ds.KIND_OP and r.phase == ds.PHASE_BACKWARD and r.name == "aten.mm.default"]
    assert "3" not in backward_ops and "2" in backward_ops, backward_ops
    assert not [r for r in records if r.kind == ds.KIND_MODULE and r.phase == ds.PHASE_BACKWARD and r.module == "3"]


class _Wrapper(nn.Module):
    """What DDP and torch.compile do to a model's names: its modules and parameters move under `module.`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


@pytest.mark.parametrize("step", [0, 1])
def test_a_wrapped_model_matches_the_model_op_for_op(tmp_path: Path, step: int) -> None:
    """A fork that only wraps the model (DDP, torch.compile) has the same modules, parameters and ops; the
    compiled fork pair was once reported as 'a code change' because its names carried `_orig_mod.`."""
    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    _train(tmp_path / "plain", step, steps=2, model=model())
    _train(tmp_path / "wrapped", step, steps=2, model=_Wrapper(model()))
    a = ds.read_deep(tmp_path / "plain" / "deep-rank0.jsonl").records
    b = ds.read_deep(tmp_path / "wrapped" / "deep-rank0.jsonl").records
    assert len(a) == len(b) and loc.locate_records(a, b) is None
    assert {r.name for r in b if r.kind == ds.KIND_STATE} == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_walk_names_an_op_sequence_change() -> None:
    def op(seq: int, name: str, digest: str = "d") -> ds.DeepRecord:
        info = ds.TensorInfo(digest, "float32", (2,))
        return ds.DeepRecord(seq, ds.KIND_OP, ds.PHASE_FORWARD, "act", name, (info,), (info,))
    base = [op(0, "aten.mm.default"), op(1, "aten.relu.default"), op(2, "aten.sum.default")]
    cand = [op(0, "aten.mm.default"), op(1, "aten.gelu.default"), op(2, "aten.sum.default")]
    found = loc.locate_records(base, cand)
    assert found.cause == loc.OP_SEQUENCE and found.position == 1
    assert "aten.relu.default" in found.detail and "aten.gelu.default" in found.detail
    extra = loc.locate_records(base, [*base[:2], op(2, "aten.neg.default"), base[2]])
    assert extra.cause == loc.OP_SEQUENCE and extra.detail.startswith("only the candidate runs aten.neg.default")
