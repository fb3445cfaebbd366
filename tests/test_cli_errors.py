"""Bad input at the command line: one line on stderr, exit 2, no traceback, nothing left behind.

The cases below are also the README's table "What parity does with bad input": the last test
regenerates it and compares (PARITY_UPDATE_README=1 rewrites it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from parity import cli
from parity.trace import schema
from parity.trace.writer import TraceWriter

from conftest import REPO

README = REPO / "README.md"
TABLE_START, TABLE_END = "<!-- bad-input-table:start -->", "<!-- bad-input-table:end -->"
# $set_env.py: PARITY_UPDATE_README -- rewrite the README's bad-input table from these cases.
UPDATE_ENV = "PARITY_UPDATE_README"


class BadInput(NamedTuple):
    what: str
    """The class of bad input, as the README table names it."""
    argv: tuple[str, ...]
    """Arguments after `parity`; {tmp} is a scratch folder, {unwritable} one nobody may write in."""
    message: str
    """A fragment the one-line message must contain."""


CASES = [
    BadInput("`-o` is a directory", ("compare", "{tmp}/a", "{tmp}/b", "-o", "{tmp}"), "is a directory; give a file name"),
    BadInput("`-o` under a regular file", ("compare", "{tmp}/a", "{tmp}/b", "-o", "{tmp}/file.txt/report.md"),
             "is a file, so nothing can be written under it"),
    BadInput("`-o` somewhere unwritable", ("report", "--pair", "toy-warmup", "-o", "{unwritable}/report.md"),
             "cannot write in"),
    BadInput("`record --out` is a regular file", ("record", "--out", "{tmp}/file.txt", "--", "python", "-c", "pass"),
             "is a file, not a run directory"),
    BadInput("negative tolerance", ("compare", "{tmp}/a", "{tmp}/b", "--tolerance", "loss:-1"),
             "the tolerance must be a finite number >= 0"),
    BadInput("negative ulp tolerance", ("compare", "{tmp}/a", "{tmp}/b", "--tolerance", "loss:-2ulp"),
             "the tolerance must be a finite number >= 0"),
    BadInput("NaN tolerance", ("compare", "{tmp}/a", "{tmp}/b", "--tolerance", "loss:nan"),
             "the tolerance must be a finite number >= 0"),
    BadInput("infinite tolerance", ("report", "--pair", "toy-warmup", "--tolerance", "loss:inf"),
             "the tolerance must be a finite number >= 0"),
    BadInput("tolerance that overflows", ("compare", "{tmp}/a", "{tmp}/b", "--tolerance", "loss:1e400"),
             "the tolerance must be a finite number >= 0"),
    BadInput("`--steps 0`", ("report", "--pair", "toy-warmup", "--steps", "0"), "argument --steps: '0': must be an integer >= 1"),
    BadInput("`--steps -1`", ("gate", "--pair", "toy-warmup", "--steps", "-1"), "argument --steps: '-1': must be an integer >= 1"),
    BadInput("`--jobs 0`", ("ablate", "--pair", "toy-ablate", "--jobs", "0"), "argument --jobs: '0': must be an integer >= 1"),
    BadInput("`--rank -1`", ("compare", "{tmp}/a", "{tmp}/b", "--rank", "-1"), "argument --rank: '-1': must be an integer >= 0"),
    BadInput("`--splits` not positive", ("resume-check", "--pair", "toy-resume", "--splits", "0,8"),
             "split points must be positive integers"),
    BadInput("`report --repeat` with run directories", ("report", "--baseline", "{tmp}/a", "--candidate", "{tmp}/b", "--repeat"),
             "--repeat: there is no baseline command to record twice"),
    BadInput("a trace field of the wrong type", ("compare", "{tmp}/bad-type", "{tmp}/bad-type"),
             "trace-rank0.jsonl:2: wrong type: step.losses[0].value"),
    BadInput("unknown option", ("compare", "{tmp}/a", "{tmp}/b", "--no-such-flag"), "unrecognized arguments: --no-such-flag"),
]
ONE_LINE = re.compile(r"^parity(?: [a-z-]+)?: error: .+\n$")


def _unwritable(tmp_path: Path) -> Path:
    """A folder no file can be created in: permission bits, or /proc where they bind nobody (root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked if not os.access(locked, os.W_OK) else Path("/proc")


def _bad_type_run(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "bad-type", 0)
    writer.write({"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0})
    writer.write({"type": schema.STEP, "step": 0, "events": [schema.EV_OPT_STEP],
                  "losses": [{"bits": "3f800000", "dtype": "float32", "value": {"not": "a number"}}]})
    writer.close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _argv(case: BadInput, tmp_path: Path) -> list[str]:
    unwritable = str(_unwritable(tmp_path))
    return [a.replace("{tmp}", str(tmp_path)).replace("{unwritable}", unwritable) for a in case.argv]


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case: BadInput, tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "file.txt").write_text("a regular file\n")
    _bad_type_run(tmp_path)
    argv = _argv(case, tmp_path)
    before = _files(tmp_path)
    monkeypatch.chdir(tmp_path)  # a parser bug that records or renders anyway would write here
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert ONE_LINE.match(err), f"not one line: {err!r}"
    assert case.message in err and "Traceback" not in err
    assert _files(tmp_path) == before, "bad input left files behind"


@pytest.mark.parametrize("case", [CASES[0], CASES[4]], ids=["output dir", "tolerance"])
def test_bad_input_in_a_real_process_exits_2_with_one_line(case: BadInput, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "parity", *_argv(case, tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and ONE_LINE.match(proc.stderr) and case.message in proc.stderr
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.md"))


def test_report_repeat_takes_a_run_directory(monkeypatch) -> None:
    """`--repeat DIR` with run directories becomes the baseline's repeat; nothing is recorded twice."""
    seen = {}

    def fake_run_pair(pair, **kwargs):
        seen["run_pair"] = kwargs
        return cli.session.PairRuns(Path(kwargs["baseline"]), Path(kwargs["candidate"]))

    def fake_compare(baseline, candidate, **kwargs):
        seen["compare"] = kwargs
        raise cli.ParityError("stop here")

    monkeypatch.setattr(cli.session, "run_pair", fake_run_pair)
    monkeypatch.setattr(cli.session, "compare_with_traces", fake_compare)
    assert cli.main(["report", "--baseline", "runs/a", "--candidate", "runs/b", "--repeat", "runs/a2"]) == cli.INVALID
    assert seen["run_pair"]["repeat"] is False and seen["compare"]["baseline_repeat"] == Path("runs/a2")
    assert cli.build_parser().parse_args(["report", "--pair", "p", "--repeat"]).repeat is True


def test_every_option_and_positional_has_help() -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "subcommand").choices
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in {"parity": parser, **subparsers}.items()
               for a in p._actions if not (a.help or "").strip()]
    assert not missing, f"options without help text: {missing}"


def _github_slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_readme_anchor_named_in_the_code_exists() -> None:
    slugs = {_github_slug(line.lstrip("#")) for line in README.read_text().splitlines() if line.startswith("#")}
    named = {(path.name, anchor) for path in (REPO / "parity").rglob("*.py")
             for anchor in re.findall(r"README\.md#([\w-]+)", path.read_text())}
    assert named, "the exceptions name README sections; the pattern found none"
    assert not {a for _, a in named} - slugs, f"anchors with no README heading: {sorted(n for n in named if n[1] not in slugs)}"


def _table() -> str:
    rows = ["| bad input | example | exit | message contains |", "| --- | --- | --- | --- |"]
    for case in CASES:
        example = "parity " + " ".join(a.replace("{tmp}/", "").replace("{tmp}", "reports").replace("{unwritable}", "/readonly") for a in case.argv)
        rows.append(f"| {case.what} | `{example}` | 2 | {case.message.replace('|', '&#124;')} |")
    return "\n".join(rows)


def test_readme_bad_input_table_is_generated_from_these_cases() -> None:
    text = README.read_text()
    assert TABLE_START in text and TABLE_END in text, f"README.md lacks the markers {TABLE_START} / {TABLE_END}"
    head, rest = text.split(TABLE_START, 1)
    current, tail = rest.split(TABLE_END, 1)
    wanted = f"\n{_table()}\n"
    if current == wanted:
        return
    if os.environ.get(UPDATE_ENV) == "1":
        README.write_text(head + TABLE_START + wanted + TABLE_END + tail)
        return
    pytest.fail(f"README.md's bad-input table is out of date: run {UPDATE_ENV}=1 python -m pytest {Path(__file__).name}"
                " -k readme and commit README.md")
