"""The seed's unticked testing checklist, run as checks: test mode, charts, checkpoints saved and loaded,
JSON exports against a schema, memory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.capture.launch import load_provenance
from parity.features.collect import CHART, CHECKPOINT, JSON_FILE, RunArtifacts
from parity.features.matrix import CHECKLIST, DIFFERENT, IDENTICAL, NOT_CHECKED, Row, presence_status, value_row
from parity.features.schema import summarize_problems, validate
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import TraceMeta

#: Peak memory within this fraction of each other counts as the same.
MEMORY_TOLERANCE = 0.10
#: The flag a trainer's quick self-test answers to (`--test`, as the seed's "Next Steps" runs it).
TEST_FLAG = "test"
_POLL_SECONDS = 0.1


@dataclass
class TestModeRun:
    """One `--test` run of a side's command, outside parity's capture, in a scratch output folder."""

    command: list[str]
    returncode: int | None
    """None where it ran past the timeout and was killed."""
    seconds: float
    peak_rss_bytes: int | None
    files_written: int
    tail: str

    def cell(self) -> str:
        if self.returncode is None:
            return f"killed after {self.seconds:.0f} s (timeout)"
        rss = f", peak RSS {self.peak_rss_bytes / 2**20:.0f} MiB" if self.peak_rss_bytes else ""
        return f"exit {self.returncode} in {self.seconds:.1f} s{rss}, {self.files_written} files written"


def _wait_with_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int | None, int | None]:
    """(exit code, peak RSS in bytes) of `proc`, reaped with wait4 so that its own rusage is read; the
    group is killed after `timeout` seconds (exit code None)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
            return proc.returncode, usage.ru_maxrss * 1024
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, None
        time.sleep(_POLL_SECONDS)


def run_test_mode(run_dir: Path, timeout: float) -> TestModeRun | str:
    """Run the recorded command again with `--test`, its output folder swapped for a scratch one.

    Returns why not (a string) where the command is unknown (no run.json)."""
    provenance = load_provenance(run_dir)
    if not provenance or not provenance.get("command"):
        return f"no run.json in {run_dir}: the command is unknown"
    scratch = Path(tempfile.mkdtemp(prefix="parity-test-mode-"))
    out = str(provenance.get("out") or run_dir.resolve())
    command = [arg.replace(out, str(scratch / "out")) for arg in provenance["command"]]
    if f"--{TEST_FLAG}" not in command:
        command.append(f"--{TEST_FLAG}")
    env = {**os.environ, **provenance.get("inherited_env", {}), **provenance.get("env", {})}
    log = scratch / "output.log"
    started = time.perf_counter()
    try:
        with open(log, "w") as sink:
            proc = subprocess.Popen(command, cwd=provenance.get("cwd"), env=env, stdout=sink,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            code, rss = _wait_with_rusage(proc, timeout)
        seconds = time.perf_counter() - started
        written = sum(1 for p in (scratch / "out").rglob("*") if p.is_file()) if (scratch / "out").exists() else 0
        return TestModeRun(command, code, seconds, rss, written, log.read_text(errors="replace")[-800:])
    except OSError as exc:
        return f"cannot run {command[0]}: {exc.strerror or exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_mode_row(a: Trace, b: Trace, runs: tuple[Any, Any]) -> Row:
    """`runs`: per side a TestModeRun, a reason it did not run (str), or None (the CLI has no --test)."""
    cells, codes = [], []
    for trace, run in zip((a, b), runs):
        if TEST_FLAG not in TraceMeta.of(trace).argparse:
            cells.append("no --test flag")
            codes.append(None)
        elif isinstance(run, TestModeRun):
            cells.append(run.cell())
            codes.append(run.returncode)
        else:
            cells.append(f"not run: {run or 'skipped (--no-test-mode)'}")
            codes.append("not run")
    status = presence_status(*codes)
    if status == IDENTICAL and codes[0] != 0:
        status = DIFFERENT if codes[0] != codes[1] else IDENTICAL
    evidence = "the recorded command re-run with --test into a scratch output folder (not recorded); " \
               "exit code, time, peak RSS via wait4"
    failing = [f"{side}: {run.tail.strip().splitlines()[-1]}" for side, run in zip("AB", runs)
               if isinstance(run, TestModeRun) and run.returncode not in (0, None) and run.tail.strip()]
    if failing:
        evidence += "; last line " + "; ".join(failing)
    if all(c is None for c in codes):
        evidence = "neither trainer's argparse has a --test flag"
    return Row(CHECKLIST, "test mode execution", cells[0], cells[1], status, evidence)


def _produced_row(feature: str, items: tuple[list[Any], list[Any]], nothing: str, noun: str, evidence: str) -> Row:
    """A side that wrote `items` (artifacts) passes where none is broken; broken on both sides is a difference."""
    cells, keys = [], []
    for found in items:
        broken = [x for x in found if x.problem]
        keys.append(None if not found else ("ok" if not broken else "broken"))
        cells.append(nothing if not found else f"{len(found) - len(broken)} {noun}"
                     + (f", {len(broken)} broken: {broken[0].path}: {broken[0].problem}" if broken else ""))
    status = presence_status(*keys)
    if status == IDENTICAL and keys[0] == "broken":
        status = DIFFERENT
    return Row(CHECKLIST, feature, cells[0], cells[1], status, evidence)


def visualization_row(a: RunArtifacts, b: RunArtifacts) -> Row:
    return _produced_row("visualization generation", tuple([x for g in r.of_kind(CHART) for x in g.artifacts] for r in (a, b)),
                         "no PNG written", "valid PNG(s)", "every .png the run wrote: signature, IHDR size, full decode")


def checkpoint_saving_row(a: RunArtifacts, b: RunArtifacts) -> Row:
    return _produced_row("checkpoint saving", tuple([x for g in r.of_kind(CHECKPOINT) for x in g.artifacts] for r in (a, b)),
                         "no checkpoint written", "complete set(s)",
                         "checkpoint files grouped into sets; every member present and non-empty")


def checkpoint_loading_row(resume: Any, matches: tuple[bool, bool]) -> Row:
    """`resume`: a ResumeResult, a reason it was not run (str), or None (no [resume] table).
    `matches`: whether the [resume] protocol runs side A's / side B's trainer."""
    if resume is None or isinstance(resume, str):
        why = resume or "not declared (no --pair, or its pair file has no [resume] table)"
        return Row(CHECKLIST, "checkpoint loading (resume-check)", why, why, NOT_CHECKED,
                   "parity resume-check runs a pair's [resume] protocol: stop at a split, resume in a fresh process, "
                   "compare with the continuous run")
    splits = ", ".join(f"{s.at}: {'exact' if s.exact else f'differs from step {s.first_divergent_step} ({s.channel})'}"
                       for s in resume.splits + resume.double)
    result = f"{'exact' if resume.exact else 'NOT exact'} (splits {splits})"
    cells = [result if m else "not declared" for m in matches]
    keys = [("exact" if resume.exact else "not exact") if m else None for m in matches]
    status = presence_status(*keys)
    if status == IDENTICAL and not resume.exact:
        status = DIFFERENT
    return Row(CHECKLIST, "checkpoint loading (resume-check)", cells[0], cells[1], status,
               f"parity resume-check of [resume] in {resume.protocol.path.name}: `{' '.join(resume.protocol.run[:3])} ...`")


def json_validation_rows(a: RunArtifacts, b: RunArtifacts) -> list[Row]:
    """Each JSON export of B validated against the schema inferred from A's files of the same pattern."""
    rows = []
    groups_a = {g.pattern: g for g in a.of_kind(JSON_FILE)}
    groups_b = {g.pattern: g for g in b.of_kind(JSON_FILE)}
    for pattern in sorted(set(groups_a) | set(groups_b)):
        ga, gb = groups_a.get(pattern), groups_b.get(pattern)
        schema_a = ga.merged_schema() if ga else None
        if ga is None or gb is None:
            rows.append(value_row(CHECKLIST, f"JSON export `{pattern}` against A's schema", ga and "written",
                                  gb and "written", "written by one side only"))
            continue
        cell_a = f"schema from {len(ga.valid)} file(s)" if schema_a else f"no schema: {summarize_problems(ga.problems)}"
        problems = list(gb.problems)
        if schema_a:
            for artifact in gb.valid:
                if "value" in artifact.detail:
                    problems += [f"{artifact.path}: {p}" for p in validate(artifact.detail["value"], schema_a)]
        cell_b = "valid" if not problems else f"{len(problems)} violation(s)"
        status = NOT_CHECKED if not schema_a else (IDENTICAL if not problems else DIFFERENT)
        rows.append(Row(CHECKLIST, f"JSON export `{pattern}` against A's schema", cell_a, cell_b, status,
                        summarize_problems(problems) if problems else "every file of B parses and fits A's schema "
                                                                       "(types, required keys, no extra keys)"))
    return rows


def _peak_memory(trace: Trace) -> int | None:
    peaks = [s.get(schema.F_PEAK_MEM) for s in trace.steps if s.get(schema.F_PEAK_MEM)]
    return max(peaks) if peaks else None


def memory_row(a: Trace, b: Trace, test_runs: tuple[Any, Any]) -> Row:
    peaks = [_peak_memory(a), _peak_memory(b)]
    shown = [f"{p / 2**20:.0f} MiB" if p else None for p in peaks]
    devices = {TraceMeta.of(t).device or "cpu" for t in (a, b)}
    what = "peak RSS of the trainer (ru_maxrss)" if devices == {"cpu"} else \
        "peak memory: torch.cuda.max_memory_allocated on GPU, ru_maxrss on CPU"
    same = None
    if all(peaks):
        gap = abs(peaks[0] - peaks[1]) / max(peaks)
        same = gap <= MEMORY_TOLERANCE
        what += (f"; B/A = {peaks[1] / peaks[0]:.2f}: they differ by {gap:.1%} of the larger, "
                 f"{'within' if same else 'beyond'} the {MEMORY_TOLERANCE:.0%} counted as the same")
    rss = [f"{side} --test {r.peak_rss_bytes / 2**20:.0f} MiB" for side, r in zip("AB", test_runs)
           if isinstance(r, TestModeRun) and r.peak_rss_bytes]
    if rss:
        what += "; peak RSS of the --test runs: " + ", ".join(rss)
    return value_row(CHECKLIST, "memory usage", peaks[0], peaks[1], f"recorded per step in the trace: {what}",
                     shown_a=shown[0], shown_b=shown[1], same=same)
