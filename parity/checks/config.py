"""`config`: what differs between the two runs' settings: argparse values, optimizer and scheduler
hyperparameters (including hard-coded ones), numerics flags and environment, via deepdiff."""

from __future__ import annotations

from typing import Any

from parity.checks.base import Finding
from parity.trace import schema
from parity.trace.reader import Trace


def run_config(trace: Trace, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The comparable settings of one run, grouped by where they come from."""
    meta = trace.header.get("meta", {})
    args = {k: v for k, v in (trace.meta.get("argparse") or {}).items() if k not in ignore}
    return {
        "argparse": args,
        "optimizers": [{"class": o["class"], **o["defaults"]} for o in trace.meta.get("optimizers", [])],
        "schedulers": trace.meta.get("schedulers", []),
        "numerics": meta.get("numerics", {}),
        "numerics_at_end": trace.meta.get("numerics_at_end", {}),
        "env": {k: v for k, v in meta.get("env", {}).items() if k not in ("RANK", "LOCAL_RANK")},
        "parity": {"seed": trace.header.get("seed"), "deterministic": trace.header.get("deterministic"),
                   "level": trace.header.get("level"), "skip_loads": trace.header.get("skip_loads") or []},
    }


def _flatten_changes(diff: Any) -> list[dict[str, Any]]:
    changes = []
    for kind, items in diff.to_dict().items():
        if isinstance(items, dict):
            for path, detail in items.items():
                if isinstance(detail, dict) and "old_value" in detail:
                    changes.append({"path": path, "baseline": detail["old_value"], "candidate": detail["new_value"]})
                else:
                    side = "candidate" if "added" in kind else "baseline"
                    changes.append({"path": path, side: detail, "change": kind})
        else:
            for path in items:
                side = "candidate" if "added" in kind else "baseline"
                changes.append({"path": path, "change": kind, side: "(present)"})
    return sorted(changes, key=lambda c: c["path"])


def config_changes(baseline: Trace, candidate: Trace, ignore: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    from deepdiff import DeepDiff  # imported here: it costs ~0.6 s of start-up that `parity --help` should not pay

    diff = DeepDiff(run_config(baseline, ignore), run_config(candidate, ignore), verbose_level=2)
    return _flatten_changes(diff)


def check_config(baseline: Trace, candidate: Trace, ignore: frozenset[str] = frozenset()) -> Finding:
    """DIFFERENT when any setting differs; explanatory only: the measured channels decide the verdict."""
    changes = config_changes(baseline, candidate, ignore)
    evidence = {"changes": changes, "ignored_args": sorted(ignore)}
    if not changes:
        return Finding("config", schema.IDENTICAL, "same arguments, hyperparameters, numerics flags and environment",
                       None, evidence, affects_training=False)
    shown = ", ".join(c["path"].replace("root", "") for c in changes[:4])
    more = f" and {len(changes) - 4} more" if len(changes) > 4 else ""
    return Finding("config", schema.DIFFERENT, f"{len(changes)} setting(s) differ: {shown}{more}", None, evidence,
                   affects_training=False)
