"""A side recorded with its output in a log says how far it got while it runs (steps read from its trace)."""

from __future__ import annotations

import re
import sys

from parity.capture import progress
from parity.capture.launch import record_command

SLOW_TRAINER = """
import time, torch
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(6):
    opt.zero_grad()
    model(torch.ones(4, 2)).sum().backward()
    opt.step()
    time.sleep(0.25)
"""


def test_a_logged_recording_reports_its_steps_while_it_runs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.5)
    result = record_command([sys.executable, "-c", SLOW_TRAINER], tmp_path / "run", log_output=True)
    assert result.returncode == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "still recording" in line]
    assert lines, "no progress line"
    counts = [int(m.group(1)) for line in lines if (m := re.search(r"steps rank0 (\d+)", line))]
    assert counts == sorted(counts) and 0 < counts[-1] <= 6  # steps close when the next one starts


def test_the_counter_reads_whole_lines_only_and_goes_on_from_where_it_stopped(tmp_path) -> None:
    trace = tmp_path / "trace-rank0.jsonl"
    trace.write_bytes(b'{"type":"header"}\n{"step":0,"type":"step"}\n{"step":1,"ty')
    counter = progress.StepCounter(tmp_path)
    assert counter.counts() == {"rank0": 1}
    with open(trace, "ab") as f:
        f.write(b'pe":"step"}\n{"step":2,"type":"step"}\n')
    assert counter.counts() == {"rank0": 3}
