"""`parity attribute`: which differing settings change training, measured by setting each back on the candidate.

Settings are read from the two recorded runs: argparse values, and the keys of config objects the trainer
holds (a namespace, a config dict, TrainingArguments), which are the values it actually uses. Each one
the candidate's command line can express (its parser's recorded option table; see cmdline.py) is set
back to the baseline's value alone, then all of them together; a setting only the candidate has is set
to its off value (False, 0). No [[toggle]] table is needed. The runs go through the ablation engine
(parallel, cached, each side recorded twice for its noise floor), and each run confirms that the value
took. With every setting set back, a candidate that still differs from the baseline differs by code
(named from the traces' source records) or by settings that are not on the command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from parity.ablate import final_loss, loss_effect, noise_floor, record_plan
from parity.checks.compare import Comparison, compare_traces
from parity.checks.config import align_config_objects, config_changes, is_path_change
from parity.exceptions import BaselineError, UsageError
from parity.explain.cmdline import Edit, NotSettable, off_value, same_value, set_argument
from parity.pairs import Pair, Side
from parity.results import (CHANGES_TRAINING, INERT, NOT_REVERTED, NOT_TAKEN, RUN_FAILED, WITHIN_NOISE,
                            AttributedSetting, AttributionResult)
from parity.trace import schema
from parity.trace.reader import Trace, load_run
from parity.trace.records import TraceMeta

#: How a setting one side lacks is shown (the config check's word for it).
ABSENT = "(absent)"
#: Run label of the candidate with every revertible setting set back.
ALL = "revert-all"
_NOT_ON_COMMAND_LINE = "not on the command line (set in code / config file)"
_ORDER = (CHANGES_TRAINING, WITHIN_NOISE, INERT, NOT_TAKEN, RUN_FAILED, NOT_REVERTED)


@dataclass(frozen=True)
class _Planned:
    """A differing setting and, where it can be set back, the edit and the run label that measure it."""

    setting: AttributedSetting
    edit: Edit | None = None
    label: str | None = None


def _objects(trace: Trace) -> dict[str, Any]:
    return {k: v for k, v in TraceMeta.of(trace).config_objects.items() if isinstance(v, dict)}


def differing_settings(baseline: Trace, candidate: Trace, ignore: frozenset[str] = frozenset()) -> list[AttributedSetting]:
    """Every argparse value and config-object key that differs, once per name, paths left out.

    Config objects other than the namespace itself hold the values the trainer uses (after presets and
    config files): they are read first. A namespace difference that such an object shows the same on
    both sides (an option left unset on one side, set to the preset's value on the other) cannot reach
    training and is not listed."""
    a_meta, b_meta = TraceMeta.of(baseline), TraceMeta.of(candidate)
    a_objs = _objects(baseline)
    b_objs = align_config_objects(a_objs, _objects(candidate))
    # The namespace found again as a config object (same names as the argparse record) adds nothing.
    shared = {n: (a_objs[n], b_objs[n]) for n in a_objs if isinstance(b_objs.get(n), dict)
              and not (a_objs[n].keys() == a_meta.argparse.keys() and b_objs[n].keys() == b_meta.argparse.keys())}
    found: dict[str, AttributedSetting] = {}

    def add(name: str, a: Any, b: Any, source: str) -> None:
        change = {"path": f"root['{name}']", "baseline": a, "candidate": b}
        if name not in found and name not in ignore and not same_value(a, b) and not is_path_change(change):
            found[name] = AttributedSetting(name, a, b, source, NOT_REVERTED)

    for obj, (a_obj, b_obj) in sorted(shared.items()):
        for name in sorted(a_obj.keys() | b_obj.keys()):
            add(name, a_obj.get(name, ABSENT), b_obj.get(name, ABSENT), f"config object {obj}")
    absorbed = {k for a_obj, b_obj in shared.values() for k in a_obj.keys() & b_obj.keys() if same_value(a_obj[k], b_obj[k])}
    for name in sorted((a_meta.argparse.keys() | b_meta.argparse.keys()) - absorbed):
        add(name, a_meta.argparse.get(name, ABSENT), b_meta.argparse.get(name, ABSENT), schema.META_ARGPARSE)
    return list(found.values())


def _plan(setting: AttributedSetting, candidate: Side, options: dict[str, list[dict[str, Any]]]) -> _Planned:
    """How to set `setting` back on the candidate's command line, or why it cannot be."""
    def refuse(reason: str, target: Any = None) -> _Planned:
        return _Planned(replace(setting, note=reason, target=target))

    if setting.candidate == ABSENT:
        return refuse("only the baseline has it: the candidate's trainer has no such setting")
    if not options:
        return refuse("the candidate's trace holds no argparse option table (recorded by an older parity, or "
                      "no argparse): record it again")
    if setting.name not in options:
        return refuse(_NOT_ON_COMMAND_LINE)
    try:
        target = setting.baseline if setting.baseline != ABSENT else off_value(setting.candidate)
        if setting.baseline == ABSENT and same_value(target, setting.candidate):
            return refuse(f"only the candidate has it, at its off value {target!r}: nothing to set back", target)
        edit = set_argument(candidate.command, options[setting.name], target)
    except NotSettable as exc:
        return refuse(str(exc))
    if edit.command == tuple(candidate.command):
        return refuse(f"the command line already leaves it at its default {target!r}: the candidate's value is "
                      "set in code or a config file", target)
    label = "revert-" + re.sub(r"[^A-Za-z0-9_.-]", "_", setting.name)
    note = "only the candidate has it: set to its off value" if setting.baseline == ABSENT else ""
    return _Planned(replace(setting, target=target, removed=edit.removed, added=edit.added, note=note), edit, label)


def _recorded(trace: Trace, setting: AttributedSetting, baseline_objects: dict[str, Any]) -> Any:
    """The value `setting` has in `trace`, read where it was found in the original runs."""
    if setting.source == schema.META_ARGPARSE:
        return TraceMeta.of(trace).argparse.get(setting.name, ABSENT)
    obj = setting.source.removeprefix("config object ")
    found = align_config_objects(baseline_objects, _objects(trace)).get(obj)
    return found.get(setting.name, ABSENT) if isinstance(found, dict) else ABSENT


def _judge(p: _Planned, traces: dict[str, Trace], finals: dict[str, float | None], noise: float | None,
           ignore: frozenset[str], failures: dict[str, str], baseline_objects: dict[str, Any]) -> AttributedSetting:
    s = p.setting
    if p.label is None:
        return s
    if p.label in failures:
        return replace(s, verdict=RUN_FAILED, note=failures[p.label])
    run = traces[p.label]
    recorded = _recorded(run, s, baseline_objects)
    if not same_value(recorded, s.target):
        how = " ".join(s.added) if s.added else "its options removed"
        return replace(s, verdict=NOT_TAKEN, note=f"set on the command line ({how}), but the run recorded {recorded!r}: "
                                                  "the trainer sets it in code or a config file")
    reverted = compare_traces(traces["candidate"], run, baseline_repeat=traces["candidate-repeat"], ignore_args=ignore)
    vs_baseline = compare_traces(traces["baseline"], run, baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
    effect = loss_effect(finals, p.label, "candidate")
    s = replace(s, reverted=reverted, vs_baseline=vs_baseline, effect=effect)
    fd = reverted.first_divergence
    if reverted.verdict == schema.IDENTICAL:
        return replace(s, verdict=INERT, note=_join(s.note, "bit-identical to the candidate when set back"))
    if reverted.verdict == schema.EQUIVALENT or (noise and effect is not None and abs(effect) <= noise):
        return replace(s, verdict=WITHIN_NOISE, note=_join(s.note, "within the candidate's own run-to-run noise"))
    if reverted.verdict == schema.DIFFERENT:
        where = f"training differs from step {fd['step']} (`{fd['channel']}`)" if fd else "training differs"
        return replace(s, verdict=CHANGES_TRAINING, note=_join(s.note, where))
    return replace(s, verdict=RUN_FAILED, note=_join(s.note, "nothing could be compared"))


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _rank(settings: list[AttributedSetting]) -> list[AttributedSetting]:
    return sorted(settings, key=lambda s: (_ORDER.index(s.verdict), -abs(s.effect) if s.effect is not None else 0.0))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.3g}%"


def conclude(settings: list[AttributedSetting], comparison: Comparison, rest: Comparison | None,
             rest_settings: list[dict[str, Any]], noise: float | None) -> str:
    """The finding in a few sentences: which settings change training, and what the rest of the divergence is."""
    if comparison.verdict == schema.IDENTICAL:
        return "Baseline and candidate train bit-identically: no setting changes training."
    responsible = [s for s in settings if s.verdict == CHANGES_TRAINING]
    floor = "0 (bitwise reproducible)" if noise == 0 else _pct(noise) if noise is not None else "not measured"
    if responsible:
        parts = [("Settings that change training alone, by effect on final loss (the candidate's noise floor is "
                  f"{floor}): " + ", ".join(f"`{s.name}` ({_pct(s.effect)})" for s in responsible) + ".")]
    elif all(s.verdict == NOT_REVERTED for s in settings):
        # Nothing was re-run, so nothing is known about any setting's effect: say only what blocked it.
        held = [s.name for s in settings]
        parts = ([f"None of the differing settings ({', '.join(f'`{n}`' for n in held[:4])}"
                  f"{f' and {len(held) - 4} more' if len(held) > 4 else ''}) can be set back on the candidate's "
                  "command line: their values come from code or a config file."] if held else [])
    else:
        parts = ["No setting changes training alone beyond the candidate's noise."]
    alone = [s.name for s in responsible if s.explains_all]
    if alone:
        parts.append(f"`{alone[0]}` alone explains the whole divergence: set back, the candidate is bit-identical to the baseline.")
    code = (rest if rest is not None else comparison).code
    files = "; ".join(f.describe() for f in code.files[:4]) + (f" and {len(code.files) - 4} more" if len(code.files) > 4 else "")
    if rest is None:
        parts.append(f"The code differs: {files}." if code.changed else "No code difference was recorded.")
    elif rest.verdict == schema.IDENTICAL:
        parts.append("With every setting set back, the rest is bit-identical to the baseline"
                     + (f" (the code differs, {files}, without changing training)." if code.changed else "."))
    elif rest.verdict == schema.EQUIVALENT:
        parts.append("With every setting set back, the rest is within the baseline's own noise.")
    else:
        fd = rest.first_divergence or {}
        where = f"first at step {fd.get('step')} in `{fd.get('channel')}`" if fd else "differs"
        if code.changed:
            parts.append(f"With every setting set back, the candidate still differs from the baseline ({where}): "
                         f"the rest is code: {files}.")
        elif rest_settings:
            names = ", ".join(c["path"].replace("root", "") for c in rest_settings[:4])
            parts.append(f"With every setting set back, the candidate still differs ({where}): the rest is in "
                         f"settings {_NOT_ON_COMMAND_LINE}: {names}.")
        else:
            parts.append(f"With every setting set back, the candidate still differs ({where}), and no recorded code "
                         "or setting difference explains it.")
    return " ".join(parts)


def _reproduce(pair: Pair | None, dirs: tuple[Path, Path] | None, steps: int | None, device: str,
               sides: tuple[Side, Side]) -> str:
    from parity.report.reproduce import find_project_root, parity_line

    argv = ["attribute", "--pair", pair.name] if pair is not None else ["attribute", *map(str, dirs or ())]
    argv += ["--steps", str(steps)] if steps else []
    argv += ["--device", device] if device != "cpu" else []
    # Variables the shell exported that both sides inherit (OMP_NUM_THREADS changes CPU numerics).
    from parity.capture.metadata import NUMERICS_ENV

    env = {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ and all(k not in s.env for s in sides)}
    return parity_line(argv, find_project_root(Path.cwd()), Path.cwd(), env)


def attribute(pair: Pair | None = None, *, baseline_dir: Path | None = None, candidate_dir: Path | None = None,
              runs_dir: Path = Path("runs"), steps: int | None = None, device: str = "cpu", jobs: int = 2,
              progress: bool = True) -> AttributionResult:
    """Set each differing setting back on the candidate alone, then all together, and judge each run."""
    runs_dir = Path(runs_dir)
    if pair is not None:
        baseline, candidate = pair.sides()
        name, ignore, root = pair.name, pair.ignore_args, runs_dir / pair.name / "attribute"
        traces, _ = record_plan({"baseline": (baseline, ""), "candidate": (candidate, "")}, root=root,
                                runs_dir=runs_dir, steps=steps, device=device, jobs=jobs, progress=False)
    else:
        if baseline_dir is None or candidate_dir is None:
            raise UsageError("give --pair NAME, or two run directories A B")
        from parity.explain.locate_runs import side_from_run  # one reading of run.json for every explanation

        (baseline, _), (candidate, _) = side_from_run(baseline_dir, "baseline"), side_from_run(candidate_dir, "candidate")
        name, ignore = f"{Path(baseline_dir).name}-vs-{Path(candidate_dir).name}", frozenset()
        root = runs_dir / "attribute" / name
        traces = {"baseline": load_run(baseline_dir).primary, "candidate": load_run(candidate_dir).primary}
    options = TraceMeta.of(traces["candidate"]).argparse_options
    planned = [_plan(s, candidate, options) for s in differing_settings(traces["baseline"], traces["candidate"], ignore)]
    plan = {"baseline-repeat": (baseline, "repeat"), "candidate-repeat": (candidate, "repeat")}
    revertible = [p for p in planned if p.label is not None]
    for p in revertible:
        plan[p.label] = (replace(candidate, name=f"candidate - {p.setting.name}", command=p.edit.command), "")
    all_label = revertible[0].label if len(revertible) == 1 else ALL if revertible else None
    if len(revertible) > 1:
        command = tuple(candidate.command)
        for p in revertible:
            try:
                command = set_argument(command, options[p.setting.name], p.setting.target).command
            except NotSettable:
                continue  # settable alone but not after another edit: the all-together run lacks it
        plan[ALL] = (replace(candidate, name="candidate - every setting", command=command), "")
    more, failures = record_plan(plan, root=root, runs_dir=runs_dir, steps=steps, device=device, jobs=jobs,
                                 progress=progress, desc="parity attribute", keep_going=True)
    for label in ("baseline-repeat", "candidate-repeat", ALL):
        if label in failures:
            raise BaselineError(f"{label}: {failures[label]}")
    traces.update(more)
    finals = {k: final_loss(v) for k, v in traces.items()}
    noise = noise_floor(finals, "candidate", "candidate-repeat")
    base_objects = _objects(traces["baseline"])
    settings = _rank([_judge(p, traces, finals, noise, ignore, failures, base_objects) for p in planned])
    comparison = compare_traces(traces["baseline"], traces["candidate"], baseline_repeat=traces["baseline-repeat"],
                                ignore_args=ignore)
    rest, rest_trace = None, traces["candidate"]
    if all_label is not None and all_label in traces:
        rest_trace = traces[all_label]
        rest = compare_traces(traces["baseline"], rest_trace, baseline_repeat=traces["baseline-repeat"], ignore_args=ignore)
    rest_settings = [c for c in config_changes(traces["baseline"], rest_trace, ignore) if not is_path_change(c)]
    return AttributionResult(name, comparison, settings, noise, rest, rest_settings,
                             conclude(settings, comparison, rest, rest_settings, noise),
                             _reproduce(pair, (Path(baseline_dir), Path(candidate_dir)) if pair is None else None,
                                        steps, device, (baseline, candidate)), dict(sorted(finals.items())))
