"""`config`: what differs between the two runs' settings: argparse values, config objects found in the
trainer (dicts, dataclasses, namespaces, TrainingArguments), DataLoader settings, optimizer and scheduler
hyperparameters (including hard-coded ones), numerics flags and environment, via deepdiff.

Paths (output directories, checkpoint and log files) differ between two runs by construction: they are
recognised, listed under `evidence["paths"]` and left out of the verdict of this check.
"""

from __future__ import annotations

import re
from typing import Any

from parity.checks.base import Finding
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import TraceMeta
from parity.trace.schema import DL_DATASET, DS_ATTRS, DS_RAW, DS_RAW_ERROR


#: A setting whose name ends like this names a place on disk, not a training setting.
_PATH_NAME = re.compile(r"(^|[_\-.])(dir|directory|path|paths|file|filename|folder|out|output|output_dir|outdir|"
                        r"ckpt|checkpoint|checkpoints|save|save_dir|log|logs|log_dir|logdir|run_name|run_dir|"
                        r"cache|cache_dir|root|wandb|tensorboard)$", re.IGNORECASE)
#: A DataLoader setting that is a digest of data, compared by the data check, not a setting.
_LOADER_DATA_KEYS = (DS_RAW, DS_ATTRS, DS_RAW_ERROR)
#: Environment variables that differ between ranks of one run by construction.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK")
#: The section of run_config holding parity's own recording options (the other sections are named
#: after the meta and header keys they come from, so a deepdiff path names the trace field).
SECTION_PARITY = "parity"


def _loader_settings(meta: TraceMeta) -> list[dict[str, Any]]:
    out = []
    for loader in meta.dataloaders:
        dataset = loader.get(DL_DATASET)
        if isinstance(dataset, dict):
            dataset = {k: v for k, v in dataset.items() if k not in _LOADER_DATA_KEYS}
        out.append({**{k: v for k, v in loader.items() if k != DL_DATASET}, DL_DATASET: dataset})
    return out


def run_config(trace: Trace, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The comparable settings of one run, grouped by where they come from."""
    meta = TraceMeta.of(trace)
    return {
        schema.META_ARGPARSE: {k: v for k, v in meta.argparse.items() if k not in ignore},
        schema.META_CONFIG_OBJECTS: meta.config_objects,
        schema.META_DATALOADERS: _loader_settings(meta),
        schema.META_OPTIMIZERS: [{schema.OPT_CLASS: o.class_name, **o.defaults} for o in meta.optimizers],
        schema.META_SCHEDULERS: [s.to_json() for s in meta.schedulers],
        schema.RUN_NUMERICS: meta.numerics,
        schema.META_NUMERICS_AT_END: meta.numerics_at_end,
        schema.RUN_ENV: {k: v for k, v in meta.env.items() if k not in _RANK_VARIABLES},
        SECTION_PARITY: {schema.H_SEED: meta.seed, schema.H_DETERMINISTIC: trace.header.get(schema.H_DETERMINISTIC),
                         schema.H_LEVEL: meta.level, schema.H_SKIP_LOADS: meta.skip_loads},
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


def _last_key(path: str) -> str:
    keys = re.findall(r"\['([^']*)'\]", path)
    return keys[-1] if keys else path


def _looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or "\\" in value) and " " not in value.strip() and len(value) < 4096


def is_path_change(change: dict[str, Any]) -> bool:
    """A change of where things are written or read from disk, not of what is trained."""
    if _PATH_NAME.search(_last_key(change["path"])):
        return True
    values = [change[k] for k in ("baseline", "candidate") if k in change and change[k] not in (None, "(present)")]
    return bool(values) and all(_looks_like_path(v) for v in values)


def _same(a: Any, b: Any) -> bool:
    """True only where deepdiff can find nothing: same types all the way down and equal values (1 and 1.0,
    or 0.0 and -0.0, are left to deepdiff, which tells them apart)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return isinstance(a, (str, int, bool, type(None))) and a == b


def _common_numerics_flags(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Numerics flags are read by capture, not set by the trainer: a flag one side has not recorded was
    unknown to its parity or its torch (a golden saved before the flag was added), not changed; compare
    only the flags both sides recorded."""
    for section in (schema.RUN_NUMERICS, schema.META_NUMERICS_AT_END):
        fa, fb = a.get(section), b.get(section)
        if isinstance(fa, dict) and isinstance(fb, dict) and fa and fb:
            common = fa.keys() & fb.keys()
            a[section], b[section] = ({k: v for k, v in f.items() if k in common} for f in (fa, fb))


def config_changes(baseline: Trace, candidate: Trace, ignore: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    a, b = run_config(baseline, ignore), run_config(candidate, ignore)
    b[schema.META_CONFIG_OBJECTS] = align_config_objects(a[schema.META_CONFIG_OBJECTS], b[schema.META_CONFIG_OBJECTS])
    _common_numerics_flags(a, b)
    if _same(a, b):  # the common case, without deepdiff's ~0.6 s import
        return []
    from deepdiff import DeepDiff  # imported here: it costs ~0.6 s of start-up that `parity --help` should not pay

    # ignore_private_variables=False: config objects are keyed like "__main__.CONFIG", which deepdiff
    # would otherwise skip as a private name.
    diff = DeepDiff(a, b, verbose_level=2, ignore_private_variables=False)
    return _flatten_changes(diff)


def _keys(value: Any) -> set[str]:
    return set(value) if isinstance(value, dict) else set()


def align_config_objects(baseline: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """The candidate's config objects keyed like the baseline's where they are the same object found
    under another name: a fork that calls `main(dict(CONFIG, lr=...))` holds its config in `main:config`
    while the base reads `__main__.CONFIG`. Matching by content (most shared keys, at least half) lets the
    diff name the one key that changed instead of a whole dict removed and another added."""
    unmatched_a = [k for k in baseline if k not in candidate]
    unmatched_b = [k for k in candidate if k not in baseline]
    renamed = {}
    for kb in unmatched_b:
        keys_b = _keys(candidate[kb])
        best, best_share = None, 0.5
        for ka in unmatched_a:
            keys_a = _keys(baseline[ka])
            union = keys_a | keys_b
            share = len(keys_a & keys_b) / len(union) if union else 0.0
            if share >= best_share and (best is None or share > best_share):
                best, best_share = ka, share
        if best is not None:
            renamed[kb] = best
            unmatched_a.remove(best)
    out = {renamed.get(k, k): v for k, v in candidate.items()}
    # The same config seen under a second name on one side only (a local alias of the global dict) is
    # not a change of settings: drop candidate-only objects equal to one the candidate already holds.
    return {k: v for k, v in out.items() if k in baseline or not any(v == w for k2, w in out.items() if k2 in baseline)}


def check_config(baseline: Trace, candidate: Trace, ignore: frozenset[str] = frozenset()) -> Finding:
    """DIFFERENT when any setting differs; explanatory only: the measured channels decide the verdict."""
    every = config_changes(baseline, candidate, ignore)
    changes = [c for c in every if not is_path_change(c)]
    paths = [c for c in every if is_path_change(c)]
    evidence = {"changes": changes, "paths": paths, "ignored_args": sorted(ignore)}
    if not changes:
        shown = f" ({len(paths)} path setting(s) differ, as they do between any two runs: " \
                + ", ".join(c["path"].replace("root", "") for c in paths[:3]) + ")" if paths else ""
        return Finding("config", schema.IDENTICAL, "same arguments, config objects, DataLoader settings, "
                       f"hyperparameters, numerics flags and environment{shown}", None, evidence, affects_training=False)
    shown = ", ".join(c["path"].replace("root", "") for c in changes[:4])
    more = f" and {len(changes) - 4} more" if len(changes) > 4 else ""
    return Finding("config", schema.DIFFERENT, f"{len(changes)} setting(s) differ: {shown}{more}", None, evidence,
                   affects_training=False)
