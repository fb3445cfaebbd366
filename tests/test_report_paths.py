"""Reports name paths inside the project relative to its root, never the machine's absolute path."""

from __future__ import annotations

from pathlib import Path

from parity.checks.compare import compare_traces
from parity.report.markdown import MarkdownReporter, ReportContext
from tests.test_causes import _trace


def test_project_paths_in_findings_are_written_from_the_root(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    base = _trace(config={"lr": 0.1, "aug_noise": 0.1, "out_dir": f"{tmp_path}/runs/a/out"})
    cand = _trace(config={"lr": 0.1, "aug_noise": 0.1, "out_dir": f"{tmp_path}/runs/b/out"})
    base.path, cand.path = tmp_path / "runs/a/trace-rank0.jsonl", tmp_path / "runs/b/trace-rank0.jsonl"
    text = MarkdownReporter().render(compare_traces(base, cand), ReportContext(base, cand), None)
    assert "runs/a/out" in text and "runs/b/out" in text
    assert str(tmp_path) not in text


def test_a_gpu_run_is_reproduced_without_the_cpu_torch_pin() -> None:
    from parity.session import _on_cuda

    cpu, gpu = _trace(), _trace()
    cpu.header["meta"]["device"], gpu.header["meta"]["device"] = "cpu", "NVIDIA H200"
    assert not _on_cuda(cpu, cpu) and _on_cuda(cpu, gpu)
