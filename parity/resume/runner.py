"""Run a resume protocol: continuous run, stopped-and-resumed runs per split, a double resume, controls."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from parity.capture.controls import CONTROL_KINDS
from parity.exceptions import BaselineError
from parity.pairs import ResumeProtocol
from parity.results import ResumeResult
from parity.resume.analysis import SegmentResult, compare_segment, loss_differences, per_unit_losses
from parity.sides import record_side
from parity.checks.base import rel_diff
from parity.checks.compare import compare_traces
from parity.trace import schema
from parity.trace.reader import Trace, load_run
from parity.trace.records import TraceMeta, step_views

#: Argparse values that legitimately differ between continuous, stopped and resumed runs.
RESUME_ARGS = frozenset({"resume", "steps", "stop_after_epoch", "save_every", "save_at_epochs", "ckpt_dir", "out",
                         "epochs", "total", "max_steps"})


def _say(message: str) -> None:
    print(f"parity: {message}", file=sys.stderr, flush=True)


class ResumeRunner:
    """Records the runs a protocol needs under `runs_dir/<name>/` and compares them."""

    def __init__(self, protocol: ResumeProtocol, runs_dir: Path, device: str = "cpu") -> None:
        self.p = protocol
        self.root = Path(runs_dir) / protocol.name / "resume"
        self.device = device
        self.runs: dict[str, str] = {}
        self.metrics: dict[str, dict[int, float]] = {}

    def _metrics_path(self, ckpt_dir: Path) -> Path | None:
        spec = self.p.metrics
        return Path(spec["file"].format(ckpt_dir=ckpt_dir)) if spec.get("file") else None

    def _read_metrics(self, path: Path | None, offset: int) -> dict[int, float]:
        """Unit -> value from the lines a run appended to the trainer's own JSON-lines log."""
        spec = self.p.metrics
        if path is None or not path.is_file():
            return {}
        out: dict[int, float] = {}
        with open(path, "rb") as handle:
            handle.seek(offset)
            for line in handle.read().decode(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if all(record.get(k) == v for k, v in spec.get("where", {}).items()) and spec["value_key"] in record:
                    out[int(record[spec["unit_key"]])] = float(record[spec["value_key"]])
        return out

    def _record(self, label: str, template: list[str], skip: tuple[str, ...] = (), **values: Any) -> Trace:
        out = self.root / label
        ckpt_dir = values.pop("ckpt_dir", out / "ckpt")
        if template is self.p.run:
            # A run from scratch starts from an empty checkpoint directory: nothing a previous check left
            # there (checkpoints a trainer might pick up, logs it appends to) may leak in.
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        metrics_path = self._metrics_path(ckpt_dir)
        offset = metrics_path.stat().st_size if metrics_path is not None and metrics_path.is_file() else 0
        command = self.p.render(template, device=self.device, ckpt_dir=ckpt_dir, total=self.p.total, **values)
        # Never cached: the checkpoints these runs write live outside their run directories.
        record_side(self.p.side(label, command), out, steps=self.p.total, device=self.device, skip_loads=skip,
                    label=f"resume-check {label}")
        self.runs[label] = str(out)
        self.metrics[label] = self._read_metrics(metrics_path, offset)
        return load_run(out).primary

    def _stopped(self, k: int) -> tuple[Trace, Path]:
        ckpt_dir = self.root / f"split-{k}" / "ckpt"
        trace = self._record(f"stop-{k}", self.p.run, ckpt_dir=ckpt_dir, stop_at=k, save_at=k)
        ckpt = Path(self.p.checkpoint_path(ckpt_dir, k))
        if not ckpt.exists():
            raise BaselineError(f"resume-check: the run stopped at {k} wrote no checkpoint at {ckpt} "
                                "(check [resume].checkpoint and the {save_at} placeholder)")
        return trace, ckpt

    def _resumed(self, label: str, ckpt: Path, stop_at: int, skip: tuple[str, ...] = ()) -> Trace:
        return self._record(label, self.p.resume, skip=skip, ckpt=ckpt, ckpt_dir=ckpt.parent, stop_at=stop_at,
                            save_at=stop_at)

    def run(self, *, splits: list[int] | None = None, double: bool = True, controls: bool = False) -> ResumeResult:
        p = self.p
        continuous = self._record("continuous", p.run, stop_at=p.total, save_at=p.total)
        results, checkpoints = [], {}
        for k in splits or p.splits:
            stopped, ckpt = self._stopped(k)
            checkpoints[k] = (stopped, ckpt)
            prefix = compare_traces(continuous, stopped, ignore_args=RESUME_ARGS)
            if prefix.finding("loss").status == schema.DIFFERENT:
                _say(f"warning: the run stopped at {k} already differs from the continuous run "
                     f"({prefix.finding('loss').summary}); the trainer may depend on the planned total")
            resumed = self._resumed(f"resume-{k}", ckpt, p.total)
            segment = compare_segment(continuous, resumed, at=k, offset=len(stopped.steps), ignore_args=RESUME_ARGS)
            if p.unit == "epochs" and len(continuous.steps) % p.total == 0:
                segment.per_unit = per_unit_losses(continuous, resumed, len(stopped.steps),
                                                   len(continuous.steps) // p.total, k + 1)
                cont, res = self.metrics.get("continuous", {}), self.metrics.get(f"resume-{k}", {})
                for row in segment.per_unit:
                    if row["unit"] in cont and row["unit"] in res:
                        a, b = cont[row["unit"]], res[row["unit"]]
                        row["metric"] = {"label": p.metrics.get("label", p.metrics.get("value_key")),
                                         "continuous": a, "resumed": b, "rel": rel_diff(a, b)}
            results.append(segment)
        chain = self._double(continuous, checkpoints) if double and p.double else []
        result = ResumeResult(p, len(continuous.steps), results, chain, runs=self.runs)
        if controls:
            k = (splits or p.splits)[0]
            result.controls = self._controls(continuous, *checkpoints[k], k)
        result.runs = self.runs
        return result

    def _double(self, continuous: Trace, checkpoints: dict[int, tuple[Trace, Path]]) -> list[SegmentResult]:
        k1, k2 = self.p.double
        stopped, ckpt1 = checkpoints.get(k1) or self._stopped(k1)
        middle = self._resumed(f"double-{k1}-to-{k2}", ckpt1, k2)
        ckpt2 = Path(self.p.checkpoint_path(ckpt1.parent, k2))
        if not ckpt2.exists():
            raise BaselineError(f"resume-check: the resumed run stopped at {k2} wrote no checkpoint at {ckpt2}")
        last = self._resumed(f"double-{k2}-to-end", ckpt2, self.p.total)
        first = compare_segment(continuous, middle, at=k1, offset=len(stopped.steps), to_end=False, ignore_args=RESUME_ARGS)
        second = compare_segment(continuous, last, at=k2, offset=len(stopped.steps) + len(middle.steps),
                                 ignore_args=RESUME_ARGS)
        return [first, second]

    def _applicable(self, continuous: Trace) -> dict[str, str | None]:
        """Control kind -> None if it can apply to this run, else why not."""
        events = {e for s in step_views(continuous) for e in s.events}
        rng = {k for s in step_views(continuous) for k in (s.rng or {})}
        return {"optimizer": None if TraceMeta.of(continuous).optimizers else "no optimizer recorded",
                "scheduler": None if TraceMeta.of(continuous).schedulers else "the run uses no LR scheduler",
                "grad_scaler": None if schema.EV_SCALER_STEP in events else "the run uses no GradScaler",
                "rng_cuda": None if "cuda" in rng else "no CUDA generator in this run",
                "rng_torch": None, "rng_numpy": None, "rng_python": None}

    def _controls(self, continuous: Trace, stopped: Trace, ckpt: Path, k: int) -> list[dict[str, Any]]:
        plain = load_run(self.root / f"resume-{k}").primary
        out = []
        for kind, why_not in self._applicable(continuous).items():
            entry: dict[str, Any] = {"state": kind, "description": CONTROL_KINDS[kind], "at": k}
            if why_not:
                out.append({**entry, "applicable": False, "fired": False, "called": False, "verdict": f"not applicable: {why_not}",
                            "first_divergent_step": None, "channel": None, "loss_rel": {}})
                continue
            trace = self._resumed(f"control-{kind}-{k}", ckpt, self.p.total, skip=(kind,))
            against_plain = compare_traces(plain, trace, ignore_args=RESUME_ARGS)
            fired = against_plain.verdict == schema.DIFFERENT
            called = kind in (trace.meta.get("skipped_calls") or [])
            fd = against_plain.first_divergence or {}
            offset = len(stopped.steps)
            if fired:
                verdict = f"needed: without it the resume diverges from step {offset + fd.get('step', 0)} ({fd.get('channel')})"
            elif called:
                verdict = "restored by the trainer, but not needed here: skipping its restore changes nothing"
            else:
                verdict = "never restored by the trainer (not in the checkpoint, or loaded another way): this control cannot test it"
            out.append({**entry, "applicable": True, "fired": fired, "called": called, "verdict": verdict,
                        "first_divergent_step": offset + fd["step"] if fd else None, "channel": fd.get("channel"),
                        "loss_rel": loss_differences(continuous, trace, offset)})
        return out
