"""pytest plugin: every pair file under a `pairs/` directory becomes one test item per expected check.

`pytest parity/` therefore gates the bundled pairs; each pair is recorded once per session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parity.checks.compare import CHECK_NAMES, Comparison


def add_run_options(addoption: Any, prefix: str = "") -> None:
    """The run options shared with the CLI's `add_run_options`, under a `--parity-` prefix here."""
    addoption(f"--{prefix}steps", type=int, default=None, help="step budget for pair sides (default: the pair file's)")
    addoption(f"--{prefix}device", choices=("cpu", "cuda"), default="cpu", help="device for pair sides")
    addoption(f"--{prefix}runs-dir", default="runs/pytest", help="where pair runs are recorded and cached")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "differential gates for declared trainer pairs")
    add_run_options(group.addoption, prefix="parity-")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "parity_pair(name): a gate item generated from a parity pair file")
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped when none is present)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".toml" and file_path.parent.name == "pairs":
        return PairFile.from_parent(parent, path=file_path)
    return None


class PairMismatch(Exception):
    """A finding's status is not what the pair file expects."""


_COMPARISONS = pytest.StashKey[dict]()


def _comparison(config: pytest.Config, path: Path) -> Comparison:
    from parity import session

    cache = config.stash.setdefault(_COMPARISONS, {})
    if path not in cache:
        pair = session.load(path)
        runs = session.run_pair(pair, steps=config.getoption("parity_steps"), device=config.getoption("parity_device"),
                                runs_dir=config.getoption("parity_runs_dir"))
        cache[path] = session.compare(runs.baseline, runs.candidate, baseline_repeat=runs.baseline_repeat,
                                      ignore_args=pair.ignore_args)
    return cache[path]


class PairFile(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        from parity.pairs import load_pair, tomllib

        data = tomllib.loads(self.path.read_text())
        if data.get("resume", {}).get("expect_exact") is not None:
            yield ResumeItem.from_parent(self, name=f"{self.path.stem}::resume", expected=bool(data["resume"]["expect_exact"]))
        if "baseline" not in data:
            return
        pair = load_pair(self.path)
        needs_gpu = "cuda" in pair.baseline.steps and pair.baseline.steps.get("cpu") == 0
        for name in ("verdict", *CHECK_NAMES):
            expected = pair.expected(name) if name != "verdict" else next(
                (e for e in pair.expectations if e.check == "verdict"), None)
            if expected is None:
                continue
            item = PairItem.from_parent(self, name=f"{pair.name}::{name}", check=name, expected=expected.status,
                                        reason=expected.reason)
            if needs_gpu:
                item.add_marker(pytest.mark.gpu)
            yield item


class _GateItem(pytest.Item):
    """Shared reporting: a mismatch prints its one-paragraph explanation, not a traceback."""

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, PairMismatch):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"parity {self.name}"


class PairItem(_GateItem):
    def __init__(self, *, check: str, expected: str, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check, self.expected, self.reason = check, expected, reason

    def runtest(self) -> None:
        if self.get_closest_marker("gpu"):
            import torch

            if not torch.cuda.is_available():
                pytest.skip("needs a CUDA device")
        c = _comparison(self.config, self.path)
        if self.check == "verdict":
            actual, step, summary = c.verdict, (c.first_divergence or {}).get("step"), "overall verdict"
        else:
            f = c.finding(self.check)
            actual, step, summary = f.status, f.first_divergent_step, f.summary
        if actual != self.expected:
            fd = c.first_divergence
            first = f"\nfirst divergence: step {fd['step']}, channel {fd['channel']}: {fd['diagnosis']}" if fd else ""
            raise PairMismatch(f"{self.check}: expected {self.expected} ({self.reason}), got {actual} at step {step}: "
                               f"{summary}{first}")


class ResumeItem(_GateItem):
    """Runs the pair's [resume] protocol at its first split (no controls, no double resume) and checks
    exactness as declared."""

    def __init__(self, *, expected: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected = expected

    def runtest(self) -> None:
        from parity import session

        from parity.resume.protocol import load_protocol

        # The gate checks the first split only, to keep `pytest parity/` fast; reports run every split.
        first = load_protocol(self.path).splits[:1]
        result = session.resume_check(self.path, splits=first, double=False,
                                      runs_dir=self.config.getoption("parity_runs_dir"),
                                      device=self.config.getoption("parity_device"))
        if result.exact != self.expected:
            details = "; ".join(f"split {s.at}: {s.diagnosis or 'exact'}" for s in result.splits + result.double)
            raise PairMismatch(f"resume expected {'EXACT' if self.expected else 'NOT exact'}, measured "
                               f"{'EXACT' if result.exact else 'NOT exact'}: {details}")
