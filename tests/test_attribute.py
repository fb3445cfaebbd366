"""`parity attribute` and the report's Explanation section: settings set back from the recorded option tables."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from parity.exceptions import ConfigError
from parity.explain.attribute import ABSENT, _plan, attribute
from parity.explain.cmdline import NotSettable, off_value, set_argument
from parity.pairs import Side, load_pair
from parity.report.explanation import explanation_lines, load_explanation
from parity.results import CHANGES_TRAINING, INERT, NOT_REVERTED, AttributedSetting
from parity.trace import schema

from conftest import PAIR_RUNS, REPO, side_table, toy_commands_recorded_in_process

TOY = REPO / "tests" / "toy" / "train.py"


def _action(options, kind="store", default=None, nargs=None, const=None):
    return {"options": list(options), "action": kind, "nargs": nargs, "default": default, "const": const}


def _pair(tmp: Path, name: str, candidate: list[str], script: Path | None = None) -> Path:
    """A toy pair file: toy-warmup's baseline (its run is cached under PAIR_RUNS by that pair's tests and gate),
    the candidate the same command with `candidate` arguments, run by `script` instead of train.py if given."""
    baseline = load_pair("toy-warmup").baseline
    runs = replace(baseline, command=(baseline.command[0], str(script), *baseline.command[2:])) if script else baseline
    path = tmp / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)  # runs/pytest does not exist yet in a fresh clone
    path.write_text(f'[pair]\nname = "{name}"\nignore_args = ["ckpt_dir"]\n'
                    + side_table("baseline", baseline) + side_table("candidate", runs, *candidate))
    return path


def _parity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, cwd=REPO)


# -- the command line, from the option table --------------------------------------------------------------
LR = [_action(["--lr"], default=0.001)]


@pytest.mark.parametrize("command,actions,value,expected", [
    (["t.py", "--lr", "0.01", "--steps", "3"], LR, 0.001, ["t.py", "--steps", "3"]),              # back to the default
    (["t.py", "--lr", "0.01", "--steps", "3"], LR, 0.1, ["t.py", "--lr", "0.1", "--steps", "3"]),  # in place
    (["t.py", "--lr=0.01"], LR, 0.5, ["t.py", "--lr", "0.5"]),
    (["t.py", "--fast"], [_action(["--fast"], "store_true", False, 0, True)], False, ["t.py"]),
    (["t.py"], [_action(["--fast"], "store_true", False, 0, True)], True, ["t.py", "--fast"]),
    (["t.py", "--amp"], [_action(["--amp", "--no-amp"], "boolean_optional", True, 0)], False, ["t.py", "--no-amp"]),
    (["t.py", "--no-x"], [_action(["--x"], "store_true", False, 0, True), _action(["--no-x"], "store_false", False, 0, False)],
     True, ["t.py", "--x"]),
    (["t.py", "--cols", "a", "b", "--lr", "1"], [_action(["--cols"], nargs="+", default=["a"])], ["c"],
     ["t.py", "--cols", "c", "--lr", "1"]),
    (["t.py", "--name", "x"], [_action(["--name"], default="x")], "{y}", ["t.py", "--name", "{{y}}"]),  # braces stay literal
])
def test_set_argument(command, actions, value, expected):
    assert list(set_argument(command, actions, value).command) == expected


@pytest.mark.parametrize("actions,value,match", [
    ([_action([], default=None)], 1, "positional"),
    (LR, None, "stores None"),
    ([_action(["--fast"], "store_true", False, 0, True)], "yes", "stores 'yes'"),
])
def test_values_that_cannot_be_written_are_refused(actions, value, match):
    with pytest.raises(NotSettable, match=match):
        set_argument(["t.py"], actions, value)


def test_off_values():
    assert (off_value(True), off_value(5), off_value(0.05)) == (False, 0, 0.0)
    with pytest.raises(NotSettable, match="no off value"):
        off_value("fancy")


@pytest.mark.parametrize("baseline,candidate,options,reason", [
    (0, ABSENT, {"x": LR}, "only the baseline has it"),
    (0.1, 0.2, {"lr": LR}, "not on the command line \\(set in code / config file\\)"),
    (ABSENT, "fancy", {"x": [_action(["--x"], default="fancy")]}, "no off value"),
    (ABSENT, False, {"x": [_action(["--x"], "store_true", False, 0, True)]}, "at its off value"),
    (0.1, 0.2, {}, "no argparse option table"),
])
def test_settings_that_are_not_set_back_say_why(baseline, candidate, options, reason):
    side = Side(name="candidate", command=("t.py",), cwd=REPO)
    planned = _plan(AttributedSetting("x", baseline, candidate, schema.META_ARGPARSE, NOT_REVERTED), side, options)
    assert planned.label is None and planned.setting.verdict == NOT_REVERTED
    assert re.search(reason, planned.setting.note), planned.setting.note


# -- whole runs (the toy pairs' trainer and steps) ---------------------------------------------------------
@pytest.fixture(scope="module")
def runs() -> Path:
    return PAIR_RUNS


@pytest.fixture(scope="module")
def two_args(runs):
    """The candidate changes two arguments: one inert (the logging interval), one that matters (lr)."""
    pair = load_pair(_pair(runs, "toy-two-args", ["--lr", "0.01", "--log-every", "2"]))
    return attribute(pair, runs_dir=runs, jobs=2, progress=False)


@pytest.mark.slow
def test_the_argument_that_matters_is_named_alone(two_args):
    by_name = {s.name: s for s in two_args.settings}
    assert set(by_name) == {"lr", "log_every"}
    assert [s.name for s in two_args.responsible] == ["lr"]
    assert by_name["lr"].verdict == CHANGES_TRAINING and by_name["lr"].explains_all
    assert by_name["lr"].removed == ("--lr", "0.01")
    assert by_name["log_every"].verdict == INERT and by_name["log_every"].reverted.verdict == schema.IDENTICAL
    assert two_args.rest.verdict == schema.IDENTICAL and two_args.noise_floor == 0.0
    assert "rest is bit-identical" in two_args.conclusion
    data = json.loads(json.dumps(two_args.to_json()))
    assert data["kind"] == "attribute" and data["responsible"] == ["lr"]
    assert data["reproduce"].startswith("parity attribute --pair toy-two-args")


@pytest.mark.slow
def _fork_script(tmp_path):
    """A toy fork: dropout 0.3 set in code, and a --tag string option only it has."""
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(TOY.parent)!r})
        from torch import nn
        import train

        _parser = train.build_parser
        def build_parser():
            parser = _parser()
            parser.add_argument("--tag", default="fancy")
            return parser
        train.build_parser = build_parser

        class Fork(train.Trainer):
            def build_model(self):
                model = super().build_model()
                for module in model.modules():
                    if isinstance(module, nn.Dropout):
                        module.p = 0.3
                return model

        raise SystemExit(train.main(trainer_cls=Fork))
        """))
    return script


def test_a_code_change_is_the_rest_and_a_one_sided_string_is_not_set_back(tmp_path):
    script = _fork_script(tmp_path)
    # Recorded in this process, one run at a time, in runs of its own (the launched path: the test above).
    with toy_commands_recorded_in_process(also=(script,)):
        result = attribute(load_pair(_pair(tmp_path, "toy-fork", ["--lr", "0.01"], script)), runs_dir=tmp_path / "runs",
                           jobs=1, progress=False)
    by_name = {s.name: s for s in result.settings}
    assert by_name["lr"].verdict == CHANGES_TRAINING and not by_name["lr"].explains_all
    assert by_name["tag"].verdict == NOT_REVERTED and "no off value" in by_name["tag"].note
    assert result.rest.verdict == schema.DIFFERENT and result.rest.code.changed
    assert "the rest is code" in result.conclusion and "fork.py" in result.conclusion


def test_when_no_setting_can_be_set_back_the_finding_claims_nothing_about_settings(tmp_path):
    script = _fork_script(tmp_path)
    with toy_commands_recorded_in_process(also=(script,)):
        result = attribute(load_pair(_pair(tmp_path, "toy-fork", [], script)), runs_dir=tmp_path / "runs",
                           jobs=1, progress=False)
    assert {s.verdict for s in result.settings} == {NOT_REVERTED} and result.rest is None
    assert result.conclusion.startswith("None of the differing settings (`tag`) can be set back")
    assert "changes training" not in result.conclusion and "The code differs" in result.conclusion


@pytest.mark.slow
def test_report_explanation_section_from_saved_results(two_args, runs, tmp_path):
    saved = {"locate": {"kind": "locate", "module": "net.2", "op": "aten::gelu", "phase": "forward", "step": 0,
                        "diagnosis": "same inputs, different outputs", "reproduce": ["parity locate --pair toy-gelu"]},
             "bisect": {"kind": "bisect", "commit": "0123456789abcdef", "subject": "model: a faster gelu",
                        "first_divergence": {"step": 0, "channel": "loss", "diagnosis": "loss differs"},
                        "reproduce": "parity bisect --pair toy --good v1 --bad HEAD", "extra": [1, 2]}}
    files = []
    for kind, data in saved.items():
        files += ["--explain", str(tmp_path / f"{kind}.json")]
        (tmp_path / f"{kind}.json").write_text(json.dumps(data))
    root = runs / "toy-two-args" / "attribute"
    out = tmp_path / "report.md"
    proc = _parity("report", "--baseline", str(root / "baseline"), "--candidate", str(root / "candidate"), *files,
                   "-o", str(out))
    assert proc.returncode == 1, proc.stderr  # the runs differ
    text = out.read_text()
    section = text[text.index("## Explanation"):text.index("## Checks")]
    assert "Module `net.2`, op `aten::gelu`, forward, at step 0" in section
    assert "Commit `0123456789ab` (model: a faster gelu): first divergence at step 0 in `loss`" in section
    assert "parity locate --pair toy-gelu" in section and "parity bisect --pair toy --good v1 --bad HEAD" in section
    assert f"parity bisect --pair toy --good v1 --bad HEAD --format json -o {tmp_path / 'bisect.json'}" in text
    proc = _parity("report", "--baseline", str(root / "baseline"), "--candidate", str(root / "candidate"), *files,
                   "--format", "json")
    assert [e["kind"] for e in json.loads(proc.stdout)["explanation"]] == ["locate", "bisect"]


def test_explanation_lines_render_an_inline_attribution():
    data = {"kind": "attribute", "conclusion": "`lr` alone explains it.", "reproduce": "parity attribute --pair p",
            "settings": [{"name": "lr", "baseline": 0.001, "candidate": 0.01, "verdict": CHANGES_TRAINING,
                          "revert_args": [], "removed_args": ["--lr", "0.01"], "final_loss_rel_change": 0.02,
                          "explains_all": True},
                         {"name": "tag", "baseline": ABSENT, "candidate": "x", "verdict": NOT_REVERTED, "note": "why"}]}
    text = "\n".join(explanation_lines([data]))
    assert "| `lr` | 0.001 -> 0.01 | `removed --lr 0.01` | **changes training** | +2% | yes |" in text
    assert "Not set back: `tag` (why)." in text and "parity attribute --pair p" in text
    assert explanation_lines([]) == []


@pytest.mark.parametrize("content,match", [("{not json", "not JSON"), ('{"kind": "profile"}', "kind 'profile'"),
                                           ("[1]", "JSON object")])
def test_bad_explanation_files_are_refused(tmp_path, content, match):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_explanation(path)


@pytest.mark.parametrize("args,message", [
    ((), "give --pair NAME, or two run directories"),
    (("--pair", "toy-warmup", "runs/a", "runs/b"), "not both"),
    (("nowhere-a", "nowhere-b"), "nowhere-a: not a run directory"),
    (("--pair", "no-such-pair"), "no pair file 'no-such-pair'"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    proc = _parity("attribute", *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_report_refuses_an_unknown_explanation_kind(tmp_path):
    (tmp_path / "x.json").write_text('{"kind": "profile", "reproduce": "x"}')
    (tmp_path / "a").mkdir()
    proc = _parity("report", "--baseline", str(tmp_path / "a"), "--candidate", str(tmp_path / "a"),
                   "--explain", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "kind 'profile'" in proc.stderr, proc.stderr
