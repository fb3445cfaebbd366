"""pytest plugin: every pair file under a `pairs/` directory becomes one test item per expected check.

`pytest parity/` therefore gates the bundled pairs; each pair is recorded and judged once per session,
by the same `session.gate` as `parity gate` (same tolerances, same expectations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parity.cli import add_golden_options, add_run_options
from parity.results import GateResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "differential gates for declared trainer pairs")
    add_run_options(group.addoption, prefix="parity-", runs_dir="runs/pytest")
    add_golden_options(group.addoption, prefix="parity-", auto=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "parity_pair(name): a gate item generated from a parity pair file")
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped when none is present)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".toml" and file_path.parent.name == "pairs":
        return PairFile.from_parent(parent, path=file_path)
    return None


class PairMismatch(Exception):
    """A finding's status is not what the pair file expects."""


_GATES = pytest.StashKey[dict]()


def _gate(config: pytest.Config, path: Path) -> GateResult:
    """The pair's gate, run once per session and shared by its items."""
    from parity import session

    cache = config.stash.setdefault(_GATES, {})
    if path not in cache:
        golden = True if config.getoption("parity_golden") else None if config.getoption("parity_no_golden") else session.AUTO_GOLDEN
        cache[path] = session.gate(path, steps=config.getoption("parity_steps"), device=config.getoption("parity_device"),
                                   runs_dir=config.getoption("parity_runs_dir"), golden=golden,
                                   update_golden=config.getoption("parity_update_golden"))
    return cache[path]


#: Pair name -> (judged on a stored golden, why not): gathered from the items' reports, so that it also
#: reaches the controller when xdist workers ran the gates.
_GATE_PROPERTY = "parity_gate"
_SEEN_GATES: dict[str, tuple[bool, str | None]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in getattr(report, "user_properties", ()):
        if key == _GATE_PROPERTY:
            name, on_golden, note = value
            _SEEN_GATES[name] = (on_golden, note)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which pairs were judged against stored goldens and which recorded their baseline, and why."""
    if not _SEEN_GATES:
        return
    on_golden = sorted(name for name, (golden, _) in _SEEN_GATES.items() if golden)
    recorded = sorted((name, note) for name, (golden, note) in _SEEN_GATES.items() if not golden)
    terminalreporter.section("parity gates")
    terminalreporter.write_line(f"{len(on_golden)} pair(s) gated on stored goldens, {len(recorded)} with both sides recorded")
    for name, note in recorded:
        if note:
            terminalreporter.write_line(f"  {name}: {note}")


class PairFile(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        from parity.exceptions import ConfigError
        from parity.pairs import load_pair

        try:
            pair = load_pair(self.path)
        except ConfigError as exc:  # a bad pair file is one collection error saying what is wrong, not a traceback
            raise self.CollectError(str(exc)) from None
        if pair.resume is not None and pair.resume.expect_exact is not None:
            yield ResumeItem.from_parent(self, name=f"{self.path.stem}::resume", expected=pair.resume.expect_exact)
        if pair.baseline is None:
            return
        needs_gpu = "cuda" in pair.baseline.steps and pair.baseline.steps.get("cpu") == 0
        for expected in pair.gated():
            item = PairItem.from_parent(self, name=f"{pair.name}::{expected.check}", check=expected.check,
                                        expected=expected.status, reason=expected.reason)
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
        result = _gate(self.config, self.path)
        self.user_properties.append((_GATE_PROPERTY, (result.pair.name, result.golden is not None, result.golden_note)))
        # A missing golden or a provenance the gate cannot judge fails every item of the pair.
        failure = result.failure("golden") or result.failure(self.check)
        if failure is not None:
            fd = result.comparison.first_divergence
            first = f"\nfirst divergence: step {fd['step']}, channel {fd['channel']}: {fd['diagnosis']}" if fd else ""
            golden = " --golden" if result.golden is not None else ""
            again = f"\nreproduce locally: parity gate --pair {self.path}{golden}"
            raise PairMismatch(f"{failure.check}: expected {failure.expected} ({failure.reason}), got {failure.actual} at "
                               f"step {failure.step}: {failure.summary}{first}{again}")


class ResumeItem(_GateItem):
    """Runs the pair's [resume] protocol at its first split (no controls, no double resume) and checks
    exactness as declared."""

    def __init__(self, *, expected: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected = expected

    def runtest(self) -> None:
        from parity import session

        pair = session.load(self.path)
        # The gate checks the first split only, to keep `pytest parity/` fast; reports run every split.
        result = session.resume_check(pair, splits=pair.resume_protocol().splits[:1], double=False,
                                      runs_dir=self.config.getoption("parity_runs_dir"),
                                      device=self.config.getoption("parity_device"))
        if result.exact != self.expected:
            details = "; ".join(f"split {s.at}: {s.diagnosis or 'exact'}" for s in result.splits + result.double)
            raise PairMismatch(f"resume expected {'EXACT' if self.expected else 'NOT exact'}, measured "
                               f"{'EXACT' if result.exact else 'NOT exact'}: {details}")
