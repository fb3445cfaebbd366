"""The report's "Explanation" section: why the runs differ, from `parity locate`, `bisect` and `attribute` results.

Each result is the JSON object `parity locate|bisect|attribute --format json -o FILE` writes (or the
attribution `parity report --attribute` runs inline). The contract this module reads; every other field
is ignored, and a missing one shows as "?":

    kind        "locate" | "bisect" | "attribute" (required; any other value is refused, exit 2)
    reproduce   the command that produces the result again: a string, or a list of shell lines whose
                last one is the parity command
    locate:     module (the FQN of the first module whose outputs differ while its inputs match), op (the
                ATen op inside it, or null), phase ("forward" | "backward"), diagnosis (one sentence),
                step (the deep-captured step)
    bisect:     commit (sha of the first bad commit), subject (its message's first line),
                first_divergence {step, channel, diagnosis} (what that commit changes)
    attribute:  conclusion (sentences), settings [{name, baseline, candidate, verdict, revert_args,
                removed_args, final_loss_rel_change, explains_all}] (ranked), responsible [names]
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Callable

from parity.exceptions import ConfigError
from parity.report.attribution_report import pct, revert_text, value_text

KINDS = ("locate", "bisect", "attribute")
_DOCS = "README.md#commands"
#: Attribution verdicts that measured something (the others say why a setting was not set back).
_MEASURED = ("changes training", "within noise", "inert")


def load_explanation(path: str | Path) -> dict[str, Any]:
    """One saved result, checked for a known `kind`; ConfigError (exit 2) naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"--explain {path}: cannot read it ({exc.strerror or exc})", docs=_DOCS) from None
    except ValueError as exc:
        raise ConfigError(f"--explain {path}: not JSON ({exc}); write it with `parity locate|bisect|attribute "
                          "--format json -o FILE`", docs=_DOCS) from None
    check_explanation(data, str(path))
    return data


def check_explanation(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"--explain {source}: expected a JSON object with a \"kind\" field", docs=_DOCS)
    if data.get("kind") not in KINDS:
        raise ConfigError(f"--explain {source}: kind {data.get('kind')!r} is not one of {', '.join(KINDS)}; "
                          "give a file written by `parity locate|bisect|attribute --format json -o FILE`", docs=_DOCS)


def reproduce_command(data: dict[str, Any]) -> str:
    """The parity command of a result's `reproduce` (the last line where it is a list)."""
    value = data.get("reproduce")
    if isinstance(value, list):
        value = next((line for line in reversed(value) if isinstance(line, str) and not line.startswith("#")), None)
    return value if isinstance(value, str) and value else "?"


def reproduce_line(data: dict[str, Any], file: str | Path) -> str:
    """The shell line that writes `file` again: the result's parity command with JSON output into it."""
    command = reproduce_command(data)
    if command == "?" or " -o " in f" {command} ":
        return command if command != "?" else f"# {file}: its reproduce command is not recorded"
    return f"{command} --format json -o {shlex.quote(str(file))}"


def _get(data: dict[str, Any], key: str) -> Any:
    value = data.get(key)
    return "?" if value is None or value == "" else value


def _locate(data: dict[str, Any]) -> list[str]:
    op = f", op `{data['op']}`" if data.get("op") else ""
    return ["### First differing module and op (`parity locate`)", "",
            f"Module `{_get(data, 'module')}`{op}, {_get(data, 'phase')}, at step {_get(data, 'step')}: "
            f"{_get(data, 'diagnosis')}", ""]


def _bisect(data: dict[str, Any]) -> list[str]:
    fd = data.get("first_divergence") if isinstance(data.get("first_divergence"), dict) else {}
    effect = (f"first divergence at step {_get(fd, 'step')} in `{_get(fd, 'channel')}`: {_get(fd, 'diagnosis')}"
              if fd else "no divergence recorded")
    return ["### First bad commit (`parity bisect`)", "",
            f"Commit `{str(_get(data, 'commit'))[:12]}` ({_get(data, 'subject')}): {effect}", ""]


def _setting_row(s: dict[str, Any]) -> str:
    how = revert_text(s.get("revert_args") or [], s.get("removed_args") or [])
    cells = [f"`{_get(s, 'name')}`", f"{value_text(s.get('baseline'))} -> {value_text(s.get('candidate'))}", how,
             f"**{_get(s, 'verdict')}**", pct(s.get("final_loss_rel_change")), "yes" if s.get("explains_all") else "no"]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _attribute(data: dict[str, Any]) -> list[str]:
    settings = [s for s in data.get("settings") or [] if isinstance(s, dict)]
    measured = [s for s in settings if s.get("verdict") in _MEASURED]
    other = [s for s in settings if s.get("verdict") not in _MEASURED]
    lines = ["### Responsible settings (`parity attribute`)", "", str(_get(data, "conclusion")), ""]
    if measured:
        lines += ["| setting | baseline -> candidate | set back with | verdict | final loss effect | explains all alone |",
                  "|:--|:--|:--|:--|--:|:--|", *map(_setting_row, measured), ""]
    if other:
        lines += ["Not set back: " + "; ".join(f"`{_get(s, 'name')}` ({_get(s, 'note')})" for s in other) + ".", ""]
    return lines


_RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {"locate": _locate, "bisect": _bisect,
                                                                 "attribute": _attribute}


def explanation_lines(explanations: list[dict[str, Any]]) -> list[str]:
    """The markdown section ([] when there is nothing to explain with)."""
    if not explanations:
        return []
    lines = ["## Explanation", "", "Why the runs differ, as measured by parity's explanation commands; each finding "
             "with the command that reproduces it.", ""]
    for data in explanations:
        check_explanation(data, "(inline)")
        lines += _RENDERERS[data["kind"]](data)
        lines += ["Reproduce:", "", "```bash", reproduce_command(data), "```", ""]
    return lines
