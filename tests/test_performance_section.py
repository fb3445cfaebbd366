"""The report's Performance and Environment sections: machine load, CPU count, no speed claims, the commit phrase."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.checks.compare import compare_traces
from parity.report.markdown import MarkdownReporter, ReportContext, _commit, _environment, _performance
from parity.trace import schema
from parity.trace.reader import Trace

LOOP = ["zero_grad", "forward", "backward", "optimizer.step"]


def _trace(name: str, *, wall_ms: float, load_start=(0.5, 0.4, 0.3), load_end=(0.6, 0.5, 0.4), cpus=8,
           git=None) -> Trace:
    meta = {"argv": [name], "device": "cpu", "git": git}
    if load_start is not None:
        meta["load"] = list(load_start)
    if cpus is not None:
        meta["cpus"] = cpus
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0,
              "seed": 0, "deterministic": False, "level": "minimal", "meta": meta}
    steps = [{"type": schema.STEP, "step": i, "events": list(LOOP), "wall_ms": wall_ms, "peak_mem_bytes": 2**20}
             for i in range(5)]
    end = {"type": schema.END, "status": schema.END_OK, "steps": len(steps)}
    if load_end is not None:
        end["load"] = list(load_end)
    return Trace(path=Path(f"{name}/trace-rank0.jsonl"), header=header, meta={}, steps=steps, end=end)


def _note(rows: list[dict]) -> str:
    (note,) = [r["median step (ms)"] for r in rows if r["side"] == "note"]
    return note


def test_quiet_machine_shows_load_and_cpus_and_makes_no_speed_claim():
    rows = _performance(ReportContext(_trace("a", wall_ms=10.0), _trace("b", wall_ms=27.0)))
    sides = {r["side"]: r for r in rows if r["side"] != "note"}
    assert sides["baseline"]["CPUs"] == 8 and sides["baseline"]["1-min load, start / end"] == "0.5 / 0.6"
    assert (sides["baseline"]["median step (ms)"], sides["candidate"]["median step (ms)"]) == (10.0, 27.0)
    note = _note(rows)
    assert note.startswith("not a speed claim: the two sides ran separately, not interleaved")
    assert "loaded machine" not in note
    text = " ".join(str(v) for r in rows for v in r.values()).lower()
    for claim in ("slower", "faster", "speed-up", "speedup", "slowdown", "2.7x"):
        assert claim not in text


@pytest.mark.parametrize("start, end, busy", [
    ((7.0, 3.0, 1.0), (0.5, 0.5, 0.5), True),   # 7.0 > 0.75 x 8 at start
    ((0.5, 0.5, 0.5), (6.5, 3.0, 1.0), True),   # 6.5 > 6.0 at the end only
    ((5.9, 5.9, 5.9), (6.0, 6.0, 6.0), False),  # at the threshold is not above it
], ids=["loaded-at-start", "loaded-at-end", "at-threshold"])
def test_loaded_side_is_named(start, end, busy):
    rows = _performance(ReportContext(_trace("a", wall_ms=10.0), _trace("b", wall_ms=10.0, load_start=start,
                                                                          load_end=end)))
    note = _note(rows)
    assert ("loaded machine (1-min load above 0.75 x CPUs): candidate (1-min load" in note) is busy
    assert "baseline (" not in note


def test_traces_without_load_say_not_recorded():
    rows = _performance(ReportContext(_trace("a", wall_ms=10.0, load_start=None, load_end=None, cpus=None),
                                      _trace("b", wall_ms=10.0)))
    old = next(r for r in rows if r["side"] == "baseline")
    assert old["1-min load, start / end"] == "not recorded / not recorded" and old["CPUs"] == "not recorded"
    assert "loaded machine" not in _note(rows)


def test_commit_is_a_noun_phrase_and_environment_names_it():
    inside = _trace("a", wall_ms=1.0, git={"root": "/r", "commit": "0123456789abcdef", "dirty": True})
    outside = _trace("b", wall_ms=1.0)
    assert (_commit(inside), _commit(outside)) == ("commit 0123456789 (dirty)", "outside git")
    rows = {r[""]: r for r in _environment(ReportContext(inside, outside))}
    assert (rows["trainer source"]["baseline"], rows["trainer source"]["candidate"]) == (
        "commit 0123456789 (dirty)", "outside git")
    assert rows["cpus"]["baseline"] == 8


def test_rendered_report_has_the_load_columns_and_the_note():
    a, b = _trace("a", wall_ms=10.0), _trace("b", wall_ms=30.0, load_start=(12.0, 9.0, 4.0))
    text = MarkdownReporter().render(compare_traces(a, b), ReportContext(a, b), None)
    section = text.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "1-min load, start / end" in section and "12 / 0.6" in section
    assert "not a speed claim" in section and "candidate (1-min load 12 on 8 CPUs)" in section
    assert "| nan" not in section
