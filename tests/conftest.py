"""Shared fixtures: every test must leave torch exactly as it found it (capture patches removed)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterator

# Idle OpenMP threads sleep instead of spinning: every trainer the suite starts (and inherits this) runs tiny
# ops on two threads, and GNU OpenMP's default busy-wait after each parallel region tripled their CPU time
# on two shared cores (toy trainer, 200 steps: 14 s -> 5.5 s of CPU) without changing a bit of the results
# (the thread count, which results depend on, is left as it is). Set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TOY = REPO / "tests" / "toy"
#: Where `pytest parity/` records the bundled pairs (its default --parity-runs-dir): a pair side recorded
#: through this folder's run cache is recorded once, whether a test or a gate item needs it first.
PAIR_RUNS = REPO / "runs" / "pytest"


def record_pair_side(side, out: Path, steps: int) -> Path:
    """Record one side of a bundled pair into `out` through the run cache `pytest parity/` uses."""
    from parity.sides import record_side

    record_side(side, out, steps=steps, device="cpu", cache_dir=PAIR_RUNS / ".cache", label=out.name)
    return out


def side_table(table: str, side, *extra: str) -> str:
    """A pair file's `[table]` that runs a bundled pair's `side` with `extra` arguments added: the same command,
    seed, steps and cwd, so that a test's pair shares the runs recorded for the bundled one (through PAIR_RUNS)."""
    import json

    lines = [f"[{table}]", f"command = {json.dumps([*side.command, *extra])}", f'cwd = "{side.cwd}"',
             "steps = { " + ", ".join(f"{device} = {n}" for device, n in side.steps.items()) + " }"]
    if side.seed is not None:
        lines.append(f"seed = {side.seed}")
    return "\n".join(lines) + "\n"


def run_toy_trainer(script: Path, args: list[str]) -> None:
    """Run the toy trainer `script` (tests/toy/train.py, a variant, or a script built on them) with `args` inside
    this process, as `python SCRIPT ARGS` runs it: its `__main__` block, with sys.argv set. sys.argv, sys.path
    and the toy modules are put back afterwards (a variant moves tests/toy to the front of sys.path); an exit
    other than 0 raises."""
    import runpy

    saved_argv, saved_path, saved_train = sys.argv, list(sys.path), sys.modules.pop("train", None)
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise RuntimeError(f"{script.name} exited with {exit_.code!r}") from None
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        sys.modules.pop("train", None)
        if saved_train is not None:
            sys.modules["train"] = saved_train


def record_toy_in_process(out: Path, script: str = "train.py", *args: str, seed: int = 0) -> Path:
    """Record the toy trainer `tests/toy/SCRIPT ARGS` inside this process, into `out`.

    For tests about what the checks make of a recording, not about the launcher: no trainer process starts
    (seconds of imports each)."""
    import parity

    with parity.record(out, seed=seed):
        run_toy_trainer(TOY / script, ["--ckpt-dir", str(out / "ckpt"), *args])
    return out


def _toy_script(command: list[str], cwd: Path, also: tuple[Path, ...]) -> Path | None:
    """The script a `python SCRIPT ...` command runs, when it is a toy script (or one of `also`), else None."""
    if len(command) < 2 or not Path(command[0]).name.startswith("python") or not command[1].endswith(".py"):
        return None
    script = (cwd / command[1]).resolve()
    return script if script.is_relative_to(TOY) or script in also else None


@contextlib.contextmanager
def toy_commands_recorded_in_process(also: tuple[Path, ...] = ()) -> Iterator[None]:
    """Within the block, a recorded command that runs a toy script (`python tests/toy/...py ARGS`, or one of the
    scripts `also` names) runs inside this process, under the same capture settings (level, seed, skipped
    loads) and with the run.json a launched recording writes; any other command, or one with an environment
    or deterministic flags to set, is launched. One recording at a time: record with jobs=1.

    For tests of what parity makes of recordings (resume checks, attribution) that start many toy runs: each
    launched one costs seconds of imports. Keep at least one launched test per capability beside them."""
    from parity.capture import config as cfg, launch, runtime
    from parity.trace.writer import encode_record

    launched = launch._run_and_describe

    def run_here(command, out, *, seed, deterministic, level, cwd, env, skip_loads, log_output, timeout):
        script = _toy_script(list(command), Path(cwd or "."), tuple(Path(p).resolve() for p in also))
        if script is None or env or deterministic:
            return launched(command, out, seed=seed, deterministic=deterministic, level=level, cwd=cwd, env=env,
                            skip_loads=skip_loads, log_output=log_output, timeout=timeout)
        started, returncode, printed = time.perf_counter(), 0, io.StringIO()
        capture = runtime.start_capture(out, cfg.CaptureConfig.parse(level), seed=seed, skip_loads=frozenset(skip_loads))
        try:
            with contextlib.redirect_stdout(printed), contextlib.chdir(cwd or "."):
                run_toy_trainer(script, list(command[2:]))
        except Exception as exc:  # the trainer failed: what a launched one reports as a non-zero exit
            capture.stop(exc)
            printed.write(f"{type(exc).__name__}: {exc}\n")
            returncode = 1
        else:
            capture.stop()
        log = out / "output.log" if log_output else None
        if log is not None:
            log.write_text(printed.getvalue())
        seconds = time.perf_counter() - started
        provenance = {"command": list(command), "cwd": str(Path(cwd or ".").resolve()), "out": str(out.resolve()),
                      "seed": seed, "deterministic": deterministic, "level": level, "skip_loads": list(skip_loads),
                      "env": {}, "inherited_env": {}, "returncode": returncode, "seconds": round(seconds, 3),
                      "python": sys.executable}
        (out / launch.RUN_FILE).write_text(encode_record(provenance) + "\n")
        return launch.RecordResult(out, returncode, seconds, log)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launch, "_run_and_describe", run_here)
        yield


#: Test files (xdist's loadfile scopes) that take longest, slowest first, with their seconds in a fresh-clone CI
#: run on two cores. xdist hands files out largest-count first, so these few-test files came last and one worker
#: ran the final minute alone; handed out first, the many short files fill in behind them. Order only: nothing
#: is selected or skipped, and a file not listed keeps xdist's order. Pair files whose sides a test records
#: (toy-*, fork-*, fw-*) are left where they are, after the tests that cache their runs for them.
LONGEST_FILES = (
    "tests/test_toy_pairs.py",                    # 103 s
    "tests/test_capture_frameworks.py",           # 70
    "tests/test_golden_gate.py",                  # 69
    "tests/test_fork_family.py",                  # 57
    "tests/test_resume.py",                       # 54
    "tests/test_attribute.py",                    # 51
    "tests/reference/test_hf_sft.py",             # 51
    "tests/reference/test_occpast.py",            # 46, with test_histocc_trainer (SAME_WORKER_AS)
    "parity/pairs/histocc-occpast-amp.toml",      # 43
    "tests/test_bisect.py",                       # 43
    "tests/test_ci_recipe.py",                    # 43
    "tests/test_reproduce.py",                    # 41
    "tests/test_ranks.py",                        # 40
    "tests/test_capture_lightning.py",            # 40
    "parity/pairs/clip-dora-complete.toml",       # 38
    "parity/pairs/lm-sample-vs-chunked.toml",     # 37
    "tests/test_locate.py",                       # 35
    "tests/test_record_safety.py",                # 33
    "parity/pairs/histocc-occpast-ddp.toml",      # 32
    "tests/test_cli.py",                          # 29
    "parity/pairs/fw-hf-resume.toml",             # 26
    "parity/pairs/clip-dora-reference.toml",      # 26
    "tests/test_sides.py",                        # 25
    "tests/reference/test_clip_dora_resume.py",   # 21
    "tests/test_session.py",                      # 20
    "tests/test_toy_family.py",                   # 19
    "parity/pairs/histocc-occpast.toml",          # 18
    "parity/pairs/histocc-occpast-nowarmup.toml",  # 15
    "tests/test_ablate.py",                       # 15
    "parity/pairs/toy-resume.toml",               # 14
)


#: Test files whose tests share an in-process result (a cached function, not a fixture) with another file's:
#: handed out as that file's part, so that one worker computes it once. test_occpast reuses
#: test_histocc_trainer's reference subprocess run (reference_first_leg, ~10 s).
SAME_WORKER_AS = {"tests/reference/test_histocc_trainer.py": "tests/reference/test_occpast.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadfile`, the LONGEST_FILES first (longest-first packing of the two workers), and the
    SAME_WORKER_AS files with their partner."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFilesFirst(LoadFileScheduling):
        def _split_scope(self, nodeid):
            scope = super()._split_scope(nodeid)
            return SAME_WORKER_AS.get(scope, scope)

        def _assign_work_unit(self, node):
            if not getattr(self, "_longest_moved", False):
                for scope in reversed(LONGEST_FILES):
                    if scope in self.workqueue:
                        self.workqueue.move_to_end(scope, last=False)
                self._longest_moved = True
            super()._assign_work_unit(node)

    return LongestFilesFirst(config, log)


_PATCHED = [
    (torch.optim.Optimizer, "__init__"), (torch.optim.Optimizer, "zero_grad"), (torch.optim.Optimizer, "load_state_dict"),
    (torch.nn.Module, "zero_grad"), (torch.nn.Module, "train"), (torch.Tensor, "backward"), (torch.autograd, "backward"),
    (torch.nn.utils, "clip_grad_norm_"), (torch.optim.lr_scheduler.LRScheduler, "step"),
    (torch.optim.lr_scheduler.LRScheduler, "__init__"), (torch.amp.GradScaler, "scale"), (torch.amp.GradScaler, "step"),
    (torch, "save"), (torch, "set_rng_state"), (np.random, "set_state"), (random, "setstate"),
    (argparse.ArgumentParser, "parse_known_args"),
]


def _snapshot() -> list[object]:
    return [getattr(owner, name) for owner, name in _PATCHED]


@pytest.fixture(autouse=True)
def torch_left_unpatched():
    """Capture hooks and wrappers are gone after each test, even a failing one."""
    before = _snapshot()
    yield
    from parity.capture import runtime

    leaked = runtime._active
    if leaked is not None:
        leaked.stop()
    after = _snapshot()
    changed = [f"{owner.__name__}.{name}" for (owner, name), a, b in zip(_PATCHED, before, after) if a is not b]
    assert leaked is None, "a capture was left running"
    assert not changed, f"capture left patches installed: {changed}"


@pytest.fixture
def parity_cmd() -> list[str]:
    return [sys.executable, "-m", "parity"]
