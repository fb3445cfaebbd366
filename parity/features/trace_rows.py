"""Rows read from the two traces: model, tokenizer and vocabulary, loss, optimizer, schedule, dtype, CLI flags,
data loading, and the numerics (same tokens in the same order? same losses?) from `compare_traces`."""

from __future__ import annotations

import re
import statistics
from typing import Any

from parity.checks.compare import Comparison
from parity.features.matrix import (CONFIG, CORE, DATA, DIFFERENT, IDENTICAL, NOT_CHECKED, NOT_RECORDED, NUMERICS, Row,
                                    value_row)
from parity.trace import schema
from parity.trace.reader import Trace
from parity.trace.records import LabelCounts, TraceMeta
from parity.trace.schema import MODEL_ROOTS, ROOT_CLASS, ROOT_MODULES, ROOT_N_PARAMS, ROOT_N_TRAINABLE, ROOT_PARAMS

#: Settings that describe the tokenizer, wherever the trainer keeps them (argparse, config objects).
_TOKENIZER_KEY = re.compile(r"tokeni[sz]er|sentencepiece|(^|_)spm(_|$)|(^|_)bpe(_|$)|vocab", re.IGNORECASE)
#: nn.Embedding's extra_repr: "num_embeddings, embedding_dim[, ...]".
_EMBEDDING = re.compile(r"^\s*(\d+),\s*(\d+)")
#: Scheduler state keys that count progress rather than describe the schedule.
_SCHEDULER_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step")
#: Check name -> how the Numerics section names it.
_NUMERIC_CHECKS = (("data", "tokens seen, in order (data digests per step)"), ("loss", "loss per step (exact bits)"),
                   ("grad_norm", "gradient norm per step"), ("lr_schedule", "learning rate per step"),
                   ("params", "parameters after each update"))
_STATUS = {schema.IDENTICAL: IDENTICAL, schema.DIFFERENT: DIFFERENT, schema.EQUIVALENT: DIFFERENT,
           schema.NOT_COMPARED: NOT_CHECKED}


def _short(cls: str) -> str:
    return cls.rpartition(".")[2]


def _model(trace: Trace) -> dict[str, Any]:
    return TraceMeta.of(trace).model or {}


def _modules(trace: Trace) -> list[list[str]]:
    return [m for r in _model(trace).get(MODEL_ROOTS, []) for m in r.get(ROOT_MODULES, []) if m]


def _embedding(trace: Trace) -> tuple[int, int, str] | None:
    """(vocabulary size, embedding dim, where read) of the model's first nn.Embedding."""
    for module in _modules(trace):
        if module[1].endswith("Embedding") and len(module) > 2:
            match = _EMBEDDING.match(module[2])
            if match:
                return int(match.group(1)), int(match.group(2)), f"{module[0]} ({_short(module[1])})"
    for root in _model(trace).get(MODEL_ROOTS, []):
        for name, shape, *_ in root.get(ROOT_PARAMS, []):
            if "emb" in name.lower() and name.endswith("weight") and len(shape) == 2:
                return shape[0], shape[1], f"parameter {name} {shape}"
    return None


def _settings_matching(trace: Trace, pattern: re.Pattern) -> dict[str, Any]:
    meta = TraceMeta.of(trace)
    found = {f"--{k.replace('_', '-')}": v for k, v in meta.argparse.items() if pattern.search(k)}
    for name, obj in meta.config_objects.items():
        if isinstance(obj, dict):
            found.update({f"{name}.{k}": v for k, v in obj.items() if pattern.search(str(k))})
    return found


def _loss_function(trace: Trace) -> str | None:
    losses = sorted({_short(m[1]) for m in _modules(trace) if m[1].endswith("Loss")})
    settings = _settings_matching(trace, re.compile(r"loss", re.IGNORECASE))
    parts = losses + [f"{k}={v}" for k, v in sorted(settings.items())]
    return ", ".join(parts) if parts else None


def _first_loss_dtype(trace: Trace) -> str | None:
    for step in trace.steps:
        if step.get(schema.F_LOSSES):
            return step[schema.F_LOSSES][0][schema.S_DTYPE]
    return None


def _optimizer(trace: Trace) -> tuple[str, dict[str, Any]] | None:
    optimizers = TraceMeta.of(trace).optimizers
    if not optimizers:
        return None
    o = optimizers[0]
    return _short(o.class_name), {k: v for k, v in sorted(o.defaults.items()) if v is not None}


def _schedule(trace: Trace) -> tuple[str, dict[str, Any]] | None:
    schedulers = TraceMeta.of(trace).schedulers
    if not schedulers:
        return None
    s = schedulers[0]
    return _short(s.class_name), {k: v for k, v in sorted(s.state.items()) if k not in _SCHEDULER_PROGRESS}


def _changed_keys(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(f"{k}: {a.get(k, 'absent')} -> {b.get(k, 'absent')}" for k in keys[:4]) + \
        (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def _model_cell(trace: Trace) -> str | None:
    roots = _model(trace).get(MODEL_ROOTS, [])
    if not roots:
        return None
    n = sum(r.get(ROOT_N_PARAMS, 0) for r in roots)
    trainable = sum(r.get(ROOT_N_TRAINABLE, 0) for r in roots)
    return f"{'+'.join(_short(r.get(ROOT_CLASS, '?')) for r in roots)}: {n:,} parameters ({trainable:,} trainable)"


def _param_dtypes(trace: Trace) -> str | None:
    dtypes = sorted({p[2] for r in _model(trace).get(MODEL_ROOTS, []) for p in r.get(ROOT_PARAMS, []) if len(p) > 2})
    return ", ".join(dtypes) or None


def core_rows(a: Trace, b: Trace, comparison: Comparison) -> list[Row]:
    """Tokenizer, vocabulary, embedding, model, loss, optimizer, schedule, dtypes, clipping, device."""
    rows = []
    tok_a, tok_b = (_settings_matching(t, _TOKENIZER_KEY) or None for t in (a, b))
    rows.append(value_row(CORE, "tokenizer", _fmt(tok_a), _fmt(tok_b),
                          "tokenizer/vocabulary settings among argparse values and config objects"
                          + ("" if tok_a or tok_b else "; the vocabulary size row reads it from the embedding")))
    emb_a, emb_b = _embedding(a), _embedding(b)
    where = f"model record: {(emb_a or emb_b)[2]}" if emb_a or emb_b else "no nn.Embedding in the model record"
    rows.append(value_row(CORE, "vocabulary size", emb_a and emb_a[0], emb_b and emb_b[0], where))
    rows.append(value_row(CORE, "embedding dimension", emb_a and emb_a[1], emb_b and emb_b[1], where))
    model = comparison.finding("model")
    rows.append(value_row(CORE, "model", _model_cell(a), _model_cell(b), f"model check: {model.summary}",
                          same=model.status == schema.IDENTICAL))
    rows.append(value_row(CORE, "parameter dtype", _param_dtypes(a), _param_dtypes(b), "dtypes of the model's parameters"))
    rows.append(value_row(CORE, "loss function", _loss_function(a), _loss_function(b),
                          "loss modules in the model record and loss settings; the trace holds the loss values, "
                          "not the function that computed them"))
    rows.append(value_row(CORE, "loss dtype", _first_loss_dtype(a), _first_loss_dtype(b), "dtype of the first recorded loss"))
    rows.append(_class_with_settings_row("optimizer", _optimizer(a), _optimizer(b),
                                         "optimizer class and every default hyperparameter, as constructed"))
    rows.append(_class_with_settings_row("lr schedule", _schedule(a), _schedule(b),
                                         "scheduler class and state_dict at construction (progress counters left out)"))
    clip_a, clip_b = (_clip(t) for t in (a, b))
    rows.append(value_row(CORE, "gradient clipping", clip_a, clip_b, "clip_grad_norm_ call of the first step",
                          missing="no clip_grad_norm_ call"))
    dev_a, dev_b = TraceMeta.of(a).device, TraceMeta.of(b).device
    rows.append(value_row(CORE, "device", dev_a, dev_b, "the device torch ran on (trace header)"))
    return rows


def _fmt(settings: dict[str, Any] | None) -> str | None:
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) if settings else None


def _clip(trace: Trace) -> str | None:
    for step in trace.steps:
        clip = step.get(schema.F_CLIP)
        if clip:
            return f"max_norm={clip.get(schema.CLIP_MAX_NORM)}, norm_type={clip.get(schema.CLIP_NORM_TYPE)}"
    return None


def _class_with_settings_row(feature: str, a: tuple[str, dict] | None, b: tuple[str, dict] | None,
                             evidence: str) -> Row:
    shown = [None if x is None else f"{x[0]}({', '.join(f'{k}={v}' for k, v in x[1].items())})" for x in (a, b)]
    if a is not None and b is not None and a != b:
        evidence += "; differs: " + (f"class {a[0]} -> {b[0]}" if a[0] != b[0] else _changed_keys(a[1], b[1]))
    return value_row(CORE, feature, shown[0], shown[1], evidence)


# -- configuration ----------------------------------------------------------------------------------

def _portable(value: Any, run_dirs: tuple[str, ...]) -> Any:
    """A value with the run's own directory written {out}: two runs' output paths then compare by what follows."""
    if isinstance(value, str):
        for run_dir in run_dirs:
            if run_dir and run_dir in value:
                value = value.replace(run_dir, "{out}")
    return value


def _given(trace: Trace, key: str) -> bool:
    flag = f"--{key.replace('_', '-')}"
    return any(arg == flag or arg.startswith(flag + "=") for arg in TraceMeta.of(trace).argv or ())


def config_rows(a: Trace, b: Trace, run_dirs: tuple[tuple[str, ...], tuple[str, ...]]) -> list[Row]:
    """One row per argparse option either trainer parsed: present or not, the value, given or defaulted."""
    args_a, args_b = TraceMeta.of(a).argparse, TraceMeta.of(b).argparse
    rows = []
    for key in sorted(set(args_a) | set(args_b)):
        # repr: None is a value here (a flag left unset), not a missing flag.
        va = repr(_portable(args_a[key], run_dirs[0])) if key in args_a else None
        vb = repr(_portable(args_b[key], run_dirs[1])) if key in args_b else None
        how = [f"{side}: {'given' if _given(t, key) else 'default'}" for side, t, args in (("A", a, args_a), ("B", b, args_b))
               if key in args]
        rows.append(value_row(CONFIG, f"--{key.replace('_', '-')}", va, vb, "argparse value (" + ", ".join(how) + ")",
                              shown_a=None if key in args_a else "no such flag",
                              shown_b=None if key in args_b else "no such flag"))
    if not rows:
        rows.append(value_row(CONFIG, "command-line flags", None, None, "neither trainer parsed arguments with argparse",
                              missing="no argparse"))
    return rows


# -- data ---------------------------------------------------------------------------------------------

def _loaders(trace: Trace) -> str | None:
    loaders = TraceMeta.of(trace).dataloaders
    if not loaders:
        return None
    return "; ".join(f"{_short(d.get(schema.DL_CLASS, '?'))}(batch_size={d.get('batch_size')}, dataset="
                     f"{_short((d.get(schema.DL_DATASET) or {}).get(schema.DS_CLASS, '?'))})" for d in loaders)


def _targets_per_step(trace: Trace) -> str | None:
    """Tokens (targets) per step from the recorded target histograms: min-max and median."""
    counts = []
    for step in trace.steps:
        labels = LabelCounts.from_record(step.get(schema.F_LABELS))
        if labels is not None:
            counts.append(sum(labels.hist.values()))
    if not counts:
        return None
    return f"{min(counts):,}-{max(counts):,} (median {statistics.median(counts):,g})" if min(counts) != max(counts) \
        else f"{counts[0]:,}"


def _inputs_per_step(trace: Trace) -> str | None:
    """How many model inputs (root forwards) each step digested: 1 for a batch per step, more under accumulation."""
    counts = sorted({len(s.get(schema.F_BATCH) or ()) for s in trace.steps if s.get(schema.F_BATCH) is not None})
    return "/".join(map(str, counts)) if counts else None


def data_rows(a: Trace, b: Trace) -> list[Row]:
    rows = [value_row(DATA, "DataLoader", _loaders(a), _loaders(b), "DataLoaders constructed (trace meta)",
                      missing="no DataLoader"),
            value_row(DATA, "targets (tokens) per step", _targets_per_step(a), _targets_per_step(b),
                      "sum of the per-step target-id histogram (recorded for integer targets of a DataLoader)"),
            value_row(DATA, "model forwards per step", _inputs_per_step(a), _inputs_per_step(b),
                      "digested root-module inputs per optimizer step"),
            value_row(DATA, "optimizer steps recorded", len(a.steps), len(b.steps), "step records in each trace")]
    return rows


# -- numerics -----------------------------------------------------------------------------------------

def _loss_at(trace: Trace, index: int) -> tuple[str, str] | None:
    """(shown value, bits) of the first loss of step `index`, or None."""
    if not trace.steps or not trace.steps[index].get(schema.F_LOSSES):
        return None
    loss = trace.steps[index][schema.F_LOSSES][0]
    return f"{loss[schema.S_VALUE]} (step {trace.steps[index][schema.F_STEP]}, bits {loss[schema.S_BITS]})", \
        f"{loss[schema.S_DTYPE]}:{loss[schema.S_BITS]}"


def numerics_rows(a: Trace, b: Trace, comparison: Comparison) -> list[Row]:
    """Same tokens in the same order, same losses, ... per step (parity's checks), and where they part."""
    rows = []
    for name, feature in _NUMERIC_CHECKS:
        f = comparison.finding(name)
        first = f" from step {f.first_divergent_step}" if f.first_divergent_step is not None else ""
        status = _STATUS[f.status]
        cell = {IDENTICAL: "same", DIFFERENT: f"differs{first}", NOT_CHECKED: NOT_RECORDED}[status]
        note = ""
        if name == "data" and not (TraceMeta.of(a).dataloaders or TraceMeta.of(b).dataloaders):
            # The data check's wording assumes a DataLoader; without one only the model's inputs were digested.
            note = "no DataLoader on either side, so this compares the model's inputs (the token ids) per step; "
        rows.append(Row(NUMERICS, feature, "reference" if status != NOT_CHECKED else cell, cell, status,
                        f"{note}{name} check ({f.status}): {f.summary}"))
    for label, index in (("first loss", 0), ("last loss", -1)):
        la, lb = _loss_at(a, index), _loss_at(b, index)
        rows.append(value_row(NUMERICS, label, la and la[1], lb and lb[1], "recorded loss value and its bits",
                              shown_a=la[0] if la else None, shown_b=lb[0] if lb else None))
    fd = comparison.first_divergence
    rows.append(Row(NUMERICS, "first divergence", "-", f"step {fd['step']}, {fd['channel']}" if fd else "none",
                    DIFFERENT if fd else IDENTICAL,
                    fd["diagnosis"] if fd else f"verdict {comparison.verdict}: no training channel differs"))
    return rows
