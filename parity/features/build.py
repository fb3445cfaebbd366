"""Assemble the feature matrix of two recorded runs: read both, collect what they wrote, run the checklist."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from parity.capture.launch import load_provenance
from parity.checks.compare import Comparison, compare_traces
from parity.exceptions import UsageError
from parity.features import checklist
from parity.features.artifact_rows import artifact_rows, metric_rows, throughput_of, tokens_per_step_row
from parity.features.collect import CHECKPOINT, MAX_FILES, RunArtifacts, collect_artifacts, mark_incomplete_sets
from parity.features.matrix import CORE, SECTIONS, FeatureMatrix, Row, value_row
from parity.features.trace_rows import config_rows, core_rows, data_rows, numerics_rows
from parity.trace import schema
from parity.trace.reader import Trace, load_run
from parity.trace.records import TraceMeta

#: Seconds a side's `--test` run may take before it is killed (and reported so).
TEST_TIMEOUT = 300.0


def read_side(spec: str | Path) -> tuple[Path, Trace]:
    """(run directory, rank-0 trace) of a recorded run; ConfigError/TraceError where it cannot be read at all."""
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"{spec}: no such run directory (record one with `parity record --out {spec} -- ...`)")
    run_dir = path.parent if path.is_file() else path
    if path.is_dir() and not any(path.glob(schema.TRACE_GLOB)):
        raise UsageError(f"{spec}: not a run directory: it holds no {schema.TRACE_GLOB} "
                          "(record one with `parity record`, or give --pair NAME)")
    return run_dir, load_run(path).primary


def side_label(run_dir: Path, trace: Trace) -> str:
    """The trainer's script as the recorded command names it (`reference/lm_sample/train.py`), else the folder."""
    command = (load_provenance(run_dir) or {}).get("command") or TraceMeta.of(trace).argv or []
    for i, arg in enumerate(command):
        if arg.endswith(".py"):
            return arg
        if arg == "-m" and i + 1 < len(command):
            return command[i + 1]
    return run_dir.name


def _cwd(run_dir: Path, trace: Trace) -> Path:
    return Path((load_provenance(run_dir) or {}).get("cwd") or TraceMeta.of(trace).run.get("cwd") or ".")


def _recorded_out(run_dir: Path) -> Path | None:
    out = (load_provenance(run_dir) or {}).get("out")
    return Path(out).resolve() if out else None


def _run_dirs(run_dir: Path) -> tuple[str, ...]:
    """Every spelling of the run directory its argparse values may hold (recorded, resolved, cached)."""
    out = (load_provenance(run_dir) or {}).get("out")
    return tuple(sorted({str(run_dir.resolve()), *([out] if out else [])}, key=len, reverse=True))


def _steps_per_second(trace: Trace) -> float | None:
    walls = [s[schema.F_WALL_MS] for s in trace.steps[1:] if s.get(schema.F_WALL_MS)]
    return 1000.0 / statistics.median(walls) if walls else None


def _throughput_row(arts: tuple[RunArtifacts, RunArtifacts], traces: tuple[Trace, Trace]) -> Row:
    found = [throughput_of(a) for a in arts]
    rates = [_steps_per_second(t) for t in traces]
    shown = [f"{f[1]:,.1f} ({f[0]}, median)" if f else None for f in found]
    steps = ", ".join(f"{side} {r:.2f} steps/s" for side, r in zip("AB", rates) if r)
    return value_row(CORE, "throughput logged (tokens/s)", found[0] and "logged", found[1] and "logged",
                     "median of the throughput metric each trainer logs; the feature is that it is logged: the sides "
                     f"ran one after the other, so speeds are shown, not judged (trace step times: {steps or 'not recorded'})",
                     shown_a=shown[0], shown_b=shown[1], missing="not logged")


def _complete_checkpoint_sets(arts: tuple[RunArtifacts, RunArtifacts]) -> None:
    members: dict[str, set[str]] = {}
    for run in arts:
        for group in run.of_kind(CHECKPOINT):
            members.setdefault(group.pattern, set()).update(m for a in group.artifacts for m in a.detail["members"])
    for run in arts:
        for group in run.of_kind(CHECKPOINT):
            mark_incomplete_sets([group], members[group.pattern])


def read_throughput(path: str | Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--throughput {path}: not a readable JSON file ({exc})") from None


def _numerics_summary(comparison: Comparison) -> dict[str, Any]:
    loss, data = comparison.finding("loss"), comparison.finding("data")
    return {"verdict": comparison.verdict, "first_divergence": comparison.first_divergence,
            "data": {"status": data.status, "summary": data.summary, "evidence": data.evidence},
            "loss": {"status": loss.status, "summary": loss.summary, "evidence": loss.evidence}}


def _same_stream(same_stream: tuple[str, Path, Path] | None) -> tuple[list[Row], dict[str, Any] | None]:
    """Numerics rows (and their summary) of a second pair of runs fed one token stream, named after it."""
    if same_stream is None:
        return [], None
    name, a_spec, b_spec = same_stream
    (_, a), (_, b) = read_side(a_spec), read_side(b_spec)
    comparison = compare_traces(a, b)
    rows = numerics_rows(a, b, comparison)
    for row in rows:
        row.feature = f"{row.feature} [{name}]"
    return rows, {"pair": name, "runs": [str(a_spec), str(b_spec)], **_numerics_summary(comparison)}


def build_matrix(a_spec: str | Path, b_spec: str | Path, *, labels: Sequence[str] | None = None,
                 test_mode: bool = True, test_timeout: float = TEST_TIMEOUT, resume: Any = None,
                 resume_sides: tuple[bool, bool] = (False, False), throughput: Any = None,
                 same_stream: tuple[str, Path, Path] | None = None, reproduce: Sequence[str] = ()) -> FeatureMatrix:
    """The feature matrix of two recorded runs.

    `resume`: a ResumeResult of the pair's [resume] protocol, a reason it was not run, or None;
    `resume_sides` says which side's trainer that protocol runs. `test_mode`: re-run each side whose
    CLI has --test (outside capture) and report its exit code and peak RSS. `same_stream`: (name, A, B)
    of two more runs of the same trainers fed one token stream: their numerics are added as rows."""
    (dir_a, a), (dir_b, b) = read_side(a_spec), read_side(b_spec)
    comparison = compare_traces(a, b)
    stream_rows, stream_summary = _same_stream(same_stream)
    arts = tuple(collect_artifacts(d, TraceMeta.of(t).argparse, _cwd(d, t), _recorded_out(d)) for d, t in ((dir_a, a), (dir_b, b)))
    _complete_checkpoint_sets(arts)
    test_runs = tuple(checklist.run_test_mode(d, test_timeout)
                      if test_mode and checklist.TEST_FLAG in TraceMeta.of(t).argparse else None
                      for d, t in ((dir_a, a), (dir_b, b)))
    rows = [*core_rows(a, b, comparison), _throughput_row(arts, (a, b)), *metric_rows(*arts), *artifact_rows(*arts),
            *config_rows(a, b, (_run_dirs(dir_a), _run_dirs(dir_b))), *data_rows(a, b), tokens_per_step_row(*arts),
            *numerics_rows(a, b, comparison), *stream_rows,
            checklist.test_mode_row(a, b, test_runs), checklist.visualization_row(*arts),
            checklist.checkpoint_saving_row(*arts), checklist.checkpoint_loading_row(resume, resume_sides),
            *checklist.json_validation_rows(*arts), checklist.memory_row(a, b, test_runs)]
    rows.sort(key=lambda r: SECTIONS.index(r.section))  # stable: each section keeps its rows' order
    numerics = _numerics_summary(comparison)
    if stream_summary is not None:
        numerics["same_stream"] = stream_summary
    notes = [f"{side}: more than {MAX_FILES} files; only the first {MAX_FILES} were read" for side, run in zip("AB", arts)
             if run.truncated]
    notes += [f"{side} searched {', '.join(run.roots)}" for side, run in zip("AB", arts)]
    return FeatureMatrix(tuple(labels) if labels else (side_label(dir_a, a), side_label(dir_b, b)),
                         (str(dir_a), str(dir_b)), rows, numerics, throughput, list(reproduce), notes)
