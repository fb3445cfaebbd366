"""Seed 004's claims checked one by one against measurements, as markdown.

    python -m implementations.hf_sft_optimized.claims --report R.json --ablation A.json --speed S.json -o OUT.md

R.json is `parity report --pair ... --format json` (the config finding gives the TrainingArguments diff),
A.json is `parity ablate --pair ... --format json` (each changed argument applied alone to BEFORE and
reverted alone from AFTER), S.json is `benchmarks/hf_sft_speed.py --json` (steps/s, tokens/s, peak
memory, GPU utilisation and truncation counts per configuration). Every number printed is read from
those files; an input left out, or a field it lacks, reads "not measured". Bad input (a missing file,
a file that is not the JSON it should be) is one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
from typing import Any

NOT_MEASURED = "not measured"
HOLDS, FAILS, UNMEASURABLE = "holds", "does not hold", "not measurable here"

# Verdict thresholds. They are printed in the document beside the verdicts they decide.
TF32_CLAIM = 8.0
"""The seed's TF32 speed-up ("8x faster matrix ops")."""
TF32_HOLDS_AT = 0.9 * TF32_CLAIM
"""tokens/s ratio of the tf32 toggle at or above which "8x faster" holds (the claim less a 10% margin)."""
CKPT_MEM_HOLDS_AT = 0.75
"""peak-memory ratio of the gradient_checkpointing toggle at or below which "30% less memory" holds (25%+ less)."""
LOADER_FASTER_AT = 1.05
"""tokens/s ratio at or above which a data-loading change counts as faster (5%, above run-to-run timing noise)."""
COMBINED_LOW, COMBINED_HIGH = 2.4, 4.0
"""The seed's combined speed-up range AFTER vs BEFORE ("2.4-4x faster", in it/s); holds at >= the low end."""
UTIL_BEFORE_CLAIM, UTIL_AFTER_LOW = 40.0, 85.0
"""The seed's GPU utilisation, BEFORE (~40%) and the low end of AFTER (85-95%); holds when AFTER >= 85%."""

LOADER_TOGGLES = ("dataloader_workers", "pin_memory", "prefetch_factor")
TRAINER_ARGS = "transformers.Trainer.args"


class ClaimsInputError(Exception):
    """An input file is missing, unreadable or not the JSON it should be; main() prints it and exits 2."""


def _load(path: str | None, kind: str, required_key: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ClaimsInputError(f"{path}: no such file (--{kind})") from None
    except IsADirectoryError:
        raise ClaimsInputError(f"{path}: is a directory, not a JSON file (--{kind})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClaimsInputError(f"{path}: cannot read it: {exc} (--{kind})") from None
    except json.JSONDecodeError as exc:
        raise ClaimsInputError(f"{path}:{exc.lineno}: not JSON: {exc.msg} (--{kind})") from None
    if not isinstance(data, dict) or not isinstance(data.get(required_key), list):
        raise ClaimsInputError(f"{path}: not a {kind} JSON: it needs a list under {required_key!r} (--{kind})")
    return data


# ---------------------------------------------------------------------------------------------- reading inputs

def _path_keys(path: str) -> list[str]:
    """deepdiff's "root['a']['b'][0]" as ['a', 'b', '0']."""
    return [name or index for name, index in re.findall(r"\[(?:'([^']*)'|(\d+))\]", path)]


def config_changes(report: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The config finding's value changes (entries with both sides), or None where the report has no config finding."""
    if report is None:
        return None
    finding = next((c for c in report["checks"] if isinstance(c, dict) and c.get("name") == "config"), None)
    if finding is None:
        return None
    changes = (finding.get("evidence") or {}).get("changes") or []
    return [c for c in changes if isinstance(c, dict) and "baseline" in c and "candidate" in c and "path" in c]


def changed_fields(changes: list[dict[str, Any]], owner: str) -> dict[str, tuple[Any, Any]]:
    """{field: (BEFORE, AFTER)} for changes directly under config_objects[owner] (owner 'argparse': the flags)."""
    out = {}
    for c in changes:
        keys = _path_keys(c["path"])
        if owner == "argparse" and len(keys) == 2 and keys[0] == "argparse":
            out[keys[1]] = (c["baseline"], c["candidate"])
        elif len(keys) == 3 and keys[:2] == ["config_objects", owner]:
            out[keys[2]] = (c["baseline"], c["candidate"])
    return out


def trainer_args_recorded(report: dict[str, Any] | None) -> bool:
    """Whether the report's config finding covers TrainingArguments at all (some field of it is named)."""
    finding = next((c for c in (report or {}).get("checks", []) if isinstance(c, dict) and c.get("name") == "config"), None)
    text = json.dumps((finding or {}).get("evidence") or {})
    return f"['{TRAINER_ARGS}']" in text


def toggles(ablation: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {} if ablation is None else {t["name"]: t for t in ablation["toggles"] if isinstance(t, dict) and "name" in t}


def speed_rows(speed: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {} if speed is None else {r["config"]: r for r in speed["rows"] if isinstance(r, dict) and "config" in r}


def ratio(rows: dict[str, dict[str, Any]], config: str, key: str, base: str = "BEFORE") -> float | None:
    """rows[config][key] / rows[base][key], or None where either is not measured (absent, None, or a zero base)."""
    a, b = rows.get(config, {}).get(key), rows.get(base, {}).get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return None
    return a / b


def noop_configs(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Rows that run BEFORE's computation unchanged, by construction of the trainers: prefetch_factor alone (dropped
    without workers), pin_memory alone (TrainingArguments pins by default), and on a CPU tf32 (dropped: no TF32)."""
    cpu = not str(rows.get("BEFORE", {}).get("device", "")).startswith("cuda")
    names = ["prefetch_factor", "pin_memory"] + (["tf32"] if cpu else [])
    return [f"BEFORE + {n}" for n in names if f"BEFORE + {n}" in rows]


def timing_band(rows: dict[str, dict[str, Any]]) -> tuple[float, float] | None:
    """(lowest, highest) tokens/s ratio among BEFORE itself (1.0) and the no-op rows: the run's timing noise.
    None where no no-op row was measured (then the verdict rules compare the bare ratio with the threshold)."""
    measured = [r for r in (ratio(rows, c, "tokens_per_s") for c in noop_configs(rows)) if r is not None]
    return (min(1.0, *measured), max(1.0, *measured)) if measured else None


def speed_verdict(value: float | None, threshold: float, band: tuple[float, float] | None,
                  yes: str = HOLDS, no: str = FAILS) -> str:
    """`yes` when the ratio reaches the threshold beyond the noise, `no` when it stays below it beyond the noise.

    With a band (lo, hi), a true ratio of exactly `threshold` could read anywhere in [threshold*lo, threshold*hi]:
    a reading inside that interval decides nothing."""
    if value is None:
        return NOT_MEASURED
    lo, hi = band or (1.0, 1.0)
    if value >= threshold * hi:
        return yes
    if value < threshold * lo:
        return no
    return f"{UNMEASURABLE} (within this run's timing noise)"


def band_note(rows: dict[str, dict[str, Any]]) -> str:
    band = timing_band(rows)
    if band is None:
        return ("Timing noise: not measured (the speed JSON has no repeat of BEFORE and no configuration that "
                "leaves its computation unchanged).")
    return (f"Timing noise of this benchmark run: configurations that leave BEFORE's computation unchanged "
            f"({', '.join(f'`{c}`' for c in noop_configs(rows))}) read {fmt_ratio(band[0])}-{fmt_ratio(band[1])} "
            "BEFORE's tokens/s. A speed verdict is decided only when the ratio clears the threshold times that band "
            "(below threshold x lowest: does not hold; at or above threshold x highest: holds).")


def _speed_arg(speed: dict[str, Any] | None, flag: str) -> str | None:
    command = (speed or {}).get("command") or []
    return command[command.index(flag) + 1] if flag in command and command.index(flag) + 1 < len(command) else None


def device_of(report: dict[str, Any] | None, rows: dict[str, dict[str, Any]]) -> str | None:
    """The device the measurements ran on: the speed rows' (cpu, cuda:0) else the report's --device flag."""
    if rows.get("BEFORE", {}).get("device"):
        return str(rows["BEFORE"]["device"])
    argv = (((report or {}).get("sides") or {}).get("baseline") or {}).get("argv") or []
    return argv[argv.index("--device") + 1] if "--device" in argv and argv.index("--device") + 1 < len(argv) else None


def pair_name(report: dict[str, Any] | None, ablation: dict[str, Any] | None) -> str | None:
    """The ablation records its pair; a report only through its run directory, runs/<pair>/baseline/..."""
    if ablation and isinstance(ablation.get("pair"), str):
        return ablation["pair"]
    path = (((report or {}).get("sides") or {}).get("baseline") or {}).get("path") or ""
    parts = path.replace("\\", "/").split("/")
    return parts[-3] if len(parts) >= 3 and parts[-2] == "baseline" else None


# ------------------------------------------------------------------------------------------------- formatting

def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}x"


def fmt_value(value: Any) -> str:
    return "unset (None)" if value is None else f"`{json.dumps(value)}`"


def fmt_mem(value: Any) -> str:
    return NOT_MEASURED if not isinstance(value, (int, float)) else f"{value / 2**20:,.0f} MiB"


def numerics(side: dict[str, Any] | None) -> str:
    """An ablation comparison as a cell: IDENTICAL, EQUIVALENT (within the measured band), DIFFERENT from step N (channel)."""
    if not side or "status" not in side:
        return NOT_MEASURED
    status = side["status"]
    if status == "DIFFERENT":
        step, channel = side.get("first_divergent_step"), side.get("channel")
        return f"DIFFERENT from step {step if step is not None else '?'} ({channel or 'channel not recorded'})"
    if status == "EQUIVALENT":
        return "EQUIVALENT (within the baseline repeat's band)"
    return str(status)


def _revert_within_noise(toggle: dict[str, Any], noise: Any) -> bool:
    """Applied alone it is EQUIVALENT, reverted alone it differs, by less than the baseline's measured noise."""
    applied, reverted = toggle.get("applied_to_baseline") or {}, toggle.get("reverted_on_candidate") or {}
    change = reverted.get("final_loss_rel_change")
    return (applied.get("status") == "EQUIVALENT" and reverted.get("status") == "DIFFERENT"
            and isinstance(noise, (int, float)) and isinstance(change, (int, float)) and abs(change) <= abs(noise))


def fmt_effect(value: Any) -> str:
    return NOT_MEASURED if not isinstance(value, (int, float)) else f"{100 * value:+.3f}%"


# --------------------------------------------------------------------------------------------------- sections

def section_diff(report: dict[str, Any] | None) -> list[str]:
    lines = ["## 1. The TrainingArguments diff", ""]
    changes = config_changes(report)
    if changes is None:
        return lines + [f"The TrainingArguments diff is {NOT_MEASURED}: no report, or no config finding in it.", ""]
    trainer = changed_fields(changes, TRAINER_ARGS)
    flags = changed_fields(changes, "argparse")
    if trainer:
        lines += ["Fields of the `TrainingArguments` the Trainer ran with (`Trainer.args.to_dict()`) that differ:", "",
                  "| field | BEFORE | AFTER |", "|---|---|---|"]
        lines += [f"| `{k}` | {fmt_value(b)} | {fmt_value(a)} |" for k, (b, a) in sorted(trainer.items())]
    elif trainer_args_recorded(report):
        lines += ["No field of the Trainer's `TrainingArguments` differs."]
    else:
        lines += [f"The Trainer's `TrainingArguments` are {NOT_MEASURED} in the report's config finding."]
    only_flags = {k: v for k, v in flags.items() if k not in trainer}
    if only_flags:
        lines += ["", "Changed on the trainers' command lines (the seed's arguments as parsed) but with no differing "
                  "`TrainingArguments` field: a script setting (max_seq_length is the tokenizer's truncation), an "
                  "argument the trainer drops on this device, or one whose BEFORE default already equals the AFTER value:",
                  "", "| flag | BEFORE | AFTER |", "|---|---|---|"]
        lines += [f"| `--{k}` | {fmt_value(b)} | {fmt_value(a)} |" for k, (b, a) in sorted(only_flags.items())]
    return lines + ["", "Out of scope: the seed also upgrades transformers, accelerate and datasets. Both sides here "
                    "run the same installed library versions, so nothing below measures a library upgrade.", ""]


def section_toggles(ablation: dict[str, Any] | None, rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## 2. Each changed argument alone", ""]
    ts = toggles(ablation)
    names = list(ts) or [c.removeprefix("BEFORE + ") for c in rows if c.startswith("BEFORE + ")]
    noise = (ablation or {}).get("noise_floor_final_loss_rel")
    lines += ["Numerics from the ablation: the argument applied alone to BEFORE, and reverted alone from AFTER, each "
              "compared bit for bit with its counterpart; first divergent step and channel where they differ. "
              "Final-loss effect: relative change of the mean loss over the last 10% of steps when applied to BEFORE "
              f"(the baseline's own run-to-run noise on it: {f'{100 * noise:.3g}%' if isinstance(noise, (int, float)) else NOT_MEASURED}). "
              "Speed columns: `BEFORE + argument` as a ratio to BEFORE, from the speed benchmark "
              "(steps/s is per optimizer step, tokens/s counts the non-pad tokens trained on).", ""]
    if not names:
        return lines + [f"Per-argument results: {NOT_MEASURED} (neither an ablation nor a speed benchmark was given).", ""]
    lines += ["| argument | applied to BEFORE | reverted from AFTER | final-loss effect | x steps/s | x tokens/s | x peak mem | x GPU util |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for name in names:
        t, config = ts.get(name, {}), f"BEFORE + {name}"
        cells = [fmt_ratio(ratio(rows, config, k)) for k in ("steps_per_s", "tokens_per_s", "peak_mem_bytes", "gpu_util")]
        if config not in rows:
            cells = [NOT_MEASURED] * 4
        lines.append(f"| `{name}` | {numerics(t.get('applied_to_baseline'))} | {numerics(t.get('reverted_on_candidate'))} | "
                     f"{fmt_effect((t.get('applied_to_baseline') or {}).get('final_loss_rel_change'))} | " + " | ".join(cells) + " |")
    lines += ["", "n/a: the benchmark did not measure it for this configuration (GPU utilisation exists only on a GPU)."]
    if rows:
        lines += ["", band_note(rows)]
    unexplained = [n for n in names if _revert_within_noise(ts.get(n, {}), noise)]
    if unexplained:
        lines += ["", "Reverted from AFTER, " + ", ".join(f"`{n}`" for n in unexplained) + " differ bit for bit although "
                  "applied to BEFORE they stay within the baseline's noise band and their final-loss change is smaller "
                  "than that band: the ablation measured the noise of BEFORE only, not of AFTER (gradient checkpointing, "
                  "workers), so these differences are not attributed to the argument; they are what AFTER's own "
                  "run-to-run noise would look like."]
    if "grad_accum" in names:
        lines += ["", "The losses compared are the ones backward ran on, normalised over the accumulation window: changing "
                  "gradient_accumulation_steps rescales them by itself, so its final-loss effect is not a change in "
                  "model quality."]
    device = rows.get("BEFORE", {}).get("device")
    if device and not str(device).startswith("cuda"):
        lines += ["", "Peak memory on a CPU is the process's maximum resident set size (interpreter, libraries, model and "
                  "activations together), not accelerator memory."]
    return lines + [""]


def _verdict(title: str, verdict: str, evidence: list[str]) -> list[str]:
    """A claim's heading, verdict and evidence: sentences as bullets, table lines ("|...") kept together as a table."""
    lines = [f"### {title}", "", f"**Verdict: {verdict}.**", ""]
    previous: bool | None = None  # was the last item a table line
    for item in filter(None, evidence):
        table = item.startswith("|")
        if previous is not None and table != previous:
            lines.append("")
        lines.append(item if table else f"- {item}")
        previous = table
    return lines + [""]


def _missing(rows: dict[str, dict[str, Any]], *configs: str) -> list[str]:
    """The evidence line for configurations the speed benchmark has no row of (empty when it has them all)."""
    absent = [f"`{c}`" for c in configs if c not in rows]
    return [f"The speed benchmark has no {' or '.join(absent)} row."] if absent else []


def claim_tf32(rows: dict[str, dict[str, Any]], ts: dict[str, dict[str, Any]]) -> list[str]:
    title = '"TF32: 8x faster matrix ops"'
    config = "BEFORE + tf32"
    missing = _missing(rows, "BEFORE", config)
    if missing:
        return _verdict(title, NOT_MEASURED, missing)
    r = ratio(rows, config, "tokens_per_s")
    base, row = rows["BEFORE"], rows[config]
    evidence = [f"tokens/s with tf32 alone: {fmt_ratio(r)} BEFORE's (steps/s {fmt_ratio(ratio(rows, config, 'steps_per_s'))}). "
                f"Threshold: holds at >= {TF32_HOLDS_AT:g}x ({TF32_CLAIM:g}x less a 10% margin).",
                f"Ablation, tf32 applied to BEFORE: {numerics(ts.get('tf32', {}).get('applied_to_baseline'))}."]
    if not str(row.get("device", "")).startswith("cuda"):
        return _verdict(title, UNMEASURABLE, evidence + [
            f"The runs are on `{row.get('device')}`: TF32 is a mode of NVIDIA Ampere-or-newer tensor cores, so there "
            "is no TF32 here; the ratio above is timing noise around an unchanged computation."])
    if row.get("tf32_matmul") != "tf32" or base.get("tf32_matmul") == "tf32":
        return _verdict(title, UNMEASURABLE, evidence + [
            f"CUDA float32 matmul precision: BEFORE `{base.get('tf32_matmul')}`, with the toggle `{row.get('tf32_matmul')}`: "
            "the toggle did not switch float32 matmuls from IEEE to TF32, so it measures nothing about TF32."])
    if row.get("dtype") in ("bf16", "fp16"):
        evidence.append(f"Both runs train under {row['dtype']} autocast: the large matmuls already run in {row['dtype']} "
                        "on tensor cores, so TF32 only reaches the float32 matmuls autocast leaves alone; the seed's "
                        "'BF16 weights -> FP32 matrix math' premise does not describe this setup.")
    if r is None:
        return _verdict(title, NOT_MEASURED, evidence)
    return _verdict(title, speed_verdict(r, TF32_HOLDS_AT, timing_band(rows)), evidence + [band_note(rows)])


def claim_checkpointing(rows: dict[str, dict[str, Any]], ts: dict[str, dict[str, Any]]) -> list[str]:
    title = '"Gradient checkpointing: 30% less memory"'
    config = "BEFORE + gradient_checkpointing"
    missing = _missing(rows, "BEFORE", config)
    if missing:
        return _verdict(title, NOT_MEASURED, missing)
    mem = ratio(rows, config, "peak_mem_bytes")
    steps, tokens = ratio(rows, config, "steps_per_s"), ratio(rows, config, "tokens_per_s")
    cost = f"{100 * (1 / steps - 1):+.1f}% time per optimizer step" if steps else f"step time {NOT_MEASURED}"
    evidence = [f"Peak memory: {fmt_mem(rows['BEFORE'].get('peak_mem_bytes'))} -> {fmt_mem(rows[config].get('peak_mem_bytes'))} "
                f"({fmt_ratio(mem)}). Threshold: holds at a ratio <= {CKPT_MEM_HOLDS_AT:g} (at least "
                f"{100 * (1 - CKPT_MEM_HOLDS_AT):.0f}% less).",
                f"What it costs: steps/s {fmt_ratio(steps)}, tokens/s {fmt_ratio(tokens)} ({cost}: the recomputed "
                "forward of each checkpointed layer).",
                f"Ablation, applied to BEFORE: {numerics(ts.get('gradient_checkpointing', {}).get('applied_to_baseline'))}."]
    if not str(rows[config].get("device", "")).startswith("cuda"):
        return _verdict(title, UNMEASURABLE, evidence + [
            "On a CPU the benchmark's peak memory is the process's maximum resident set, which the interpreter and "
            "libraries dominate at this model size; the claim is about accelerator memory held by activations."])
    if mem is None:
        return _verdict(title, NOT_MEASURED, evidence)
    return _verdict(title, HOLDS if mem <= CKPT_MEM_HOLDS_AT else FAILS, evidence)


def claim_seq_length(speed: dict[str, Any] | None, rows: dict[str, dict[str, Any]], ts: dict[str, dict[str, Any]]) -> list[str]:
    title = '"max_seq_length 1536: right-sized, no wasted compute" (and nothing else changes)'
    trunc = (speed or {}).get("truncation") or {}
    scale = int(_speed_arg(speed, "--scale") or 1)
    applied = ts.get("max_seq_length", {}).get("applied_to_baseline")
    cut_long, cut_short = trunc.get("truncated_at_2048"), trunc.get("truncated_at_1536")
    evidence = ["The collator pads each batch to its longest example (dynamic padding), so max_seq_length only "
                "truncates: it cannot remove padding a batch does not have."]
    if isinstance(cut_long, int) and isinstance(cut_short, int):
        evidence.append(f"Data: {trunc.get('examples', NOT_MEASURED)} examples, longest {trunc.get('max_tokens', NOT_MEASURED)} "
                        f"tokens. Truncated at {2048 // scale}: **{cut_long}**; at {1536 // scale}: **{cut_short}**"
                        + (f" (lengths divided by --scale {scale}: 2048 -> {2048 // scale}, 1536 -> {1536 // scale})." if scale != 1 else "."))
    else:
        evidence.append(f"Truncation counts: {NOT_MEASURED}.")
    evidence.append(f"Ablation, max_seq_length applied to BEFORE: {numerics(applied)}.")
    config = "BEFORE + max_seq_length"
    pads = [rows.get(c, {}).get("pad_fraction") for c in ("BEFORE", config)]
    if all(isinstance(p, (int, float)) for p in pads):
        evidence.append(f"Padding share of the trained batches: BEFORE {100 * pads[0]:.1f}%, with 1536 {100 * pads[1]:.1f}%; "
                        f"tokens/s {fmt_ratio(ratio(rows, config, 'tokens_per_s'))}, steps/s {fmt_ratio(ratio(rows, config, 'steps_per_s'))}.")
    evidence.append("Verdict rule: holds when no more examples are cut at 1536 than at 2048 and the ablation finds the "
                    "change IDENTICAL; does not hold when it cuts examples (a data change) or changes training.")
    more_cut = isinstance(cut_long, int) and isinstance(cut_short, int) and cut_short > cut_long
    changed = bool(applied) and applied.get("status") == "DIFFERENT"
    if more_cut or changed:
        if more_cut:
            evidence.append(f"{cut_short - cut_long} more examples lose their tail at 1536: that is a change of the "
                            "training data, not a saving of padding.")
        return _verdict(title, FAILS, evidence)
    if applied and isinstance(cut_long, int) and isinstance(cut_short, int):
        return _verdict(title, HOLDS, evidence)
    return _verdict(title, NOT_MEASURED, evidence)


def claim_loaders(rows: dict[str, dict[str, Any]], ts: dict[str, dict[str, Any]]) -> list[str]:
    title = '"Workers, prefetching, pinning: no CPU bottleneck, GPU never waits" (same batches, faster)'
    cuda = str(rows.get("BEFORE", {}).get("device", "")).startswith("cuda")
    lines = ["| argument | batches (ablation, applied to BEFORE) | reverted from AFTER | x tokens/s | x steps/s | x GPU util |",
             "|---|---|---|---:|---:|---:|"]
    same, faster, measured = [], [], []
    for name in LOADER_TOGGLES:
        applied = ts.get(name, {}).get("applied_to_baseline")
        config = f"BEFORE + {name}"
        tok = ratio(rows, config, "tokens_per_s")
        lines.append(f"| `{name}` | {numerics(applied)} | {numerics(ts.get(name, {}).get('reverted_on_candidate'))} | "
                     f"{fmt_ratio(tok) if config in rows else NOT_MEASURED} | "
                     f"{fmt_ratio(ratio(rows, config, 'steps_per_s')) if config in rows else NOT_MEASURED} | "
                     f"{fmt_ratio(ratio(rows, config, 'gpu_util')) if config in rows else NOT_MEASURED} |")
        if applied:
            same.append(applied.get("status") in ("IDENTICAL", "EQUIVALENT"))
        if tok is not None:
            measured.append(name)
            faster.append("unchanged computation here (a noise reference)" if config in noop_configs(rows) else
                          speed_verdict(tok, LOADER_FASTER_AT, timing_band(rows), "faster", "not faster"))
    evidence = lines + ["", f"Verdict rule: 'same batches' holds when each applied run is IDENTICAL (or EQUIVALENT); "
                        f"'faster' holds for an argument whose tokens/s ratio is >= {LOADER_FASTER_AT:g}.", band_note(rows)]
    evidence.append("A prefetch factor applies to worker processes only: BEFORE has none, so applied alone to BEFORE "
                    "the trainer drops it (its row then measures BEFORE again); its effect shows only with workers.")
    if not cuda:
        evidence.append("Pinned memory speeds up host-to-GPU copies; a CPU run makes none, so pinning's speed effect "
                        "is not measurable here.")
    if len(same) == len(LOADER_TOGGLES):
        batches = HOLDS if all(same) else FAILS
    else:
        batches = NOT_MEASURED
    speed = NOT_MEASURED if not measured else ", ".join(
        f"`{n}` {f}" for n, f in zip(measured, faster))
    return _verdict(title, f"same batches: {batches}; speed: {speed}", evidence)


def claim_pinning(report: dict[str, Any] | None) -> list[str]:
    title = '"Memory Pinning: Disabled in BEFORE"'
    changes = config_changes(report)
    if changes is None or not trainer_args_recorded(report):
        return _verdict(title, NOT_MEASURED, ["The report's config finding does not cover the Trainer's TrainingArguments."])
    trainer = changed_fields(changes, TRAINER_ARGS)
    flags = changed_fields(changes, "argparse")
    if "dataloader_pin_memory" in trainer:
        before, after = trainer["dataloader_pin_memory"]
        return _verdict(title, HOLDS if before is False else FAILS,
                        [f"`TrainingArguments.dataloader_pin_memory`: BEFORE {fmt_value(before)}, AFTER {fmt_value(after)}."])
    evidence = ["`TrainingArguments.dataloader_pin_memory` is not among the fields that differ: BEFORE ran with the "
                "same value as AFTER."]
    if "dataloader_pin_memory" in flags:
        before, after = flags["dataloader_pin_memory"]
        evidence.append(f"The flag differs ({fmt_value(before)} -> {fmt_value(after)}): BEFORE does not pass the "
                        "argument, AFTER passes it, and TrainingArguments ended up the same; its default is True.")
        if after is True:
            return _verdict(title, FAILS, evidence + ["So BEFORE's TrainingArguments already asked for pinned memory: "
                                                      "the seed's 'Disabled' is the argument missing from the script, "
                                                      "not pinning switched off."])
    return _verdict(title, NOT_MEASURED, evidence + ["Which value both sides share is not in the report (it lists only "
                                                     "differing fields)."])


def claim_combined(rows: dict[str, dict[str, Any]], ablation: dict[str, Any] | None) -> list[str]:
    title = f'"Combined: {COMBINED_LOW:g}-{COMBINED_HIGH:g}x faster" (AFTER vs BEFORE)'
    if _missing(rows, "BEFORE", "AFTER"):
        return _verdict(title, NOT_MEASURED, _missing(rows, "BEFORE", "AFTER"))
    b, a = rows["BEFORE"], rows["AFTER"]
    steps, tokens = ratio(rows, "AFTER", "steps_per_s"), ratio(rows, "AFTER", "tokens_per_s")

    def num(v: Any, f: str = ".3f") -> str:
        return format(v, f) if isinstance(v, (int, float)) else NOT_MEASURED

    evidence = ["| | BEFORE | AFTER | AFTER / BEFORE |", "|---|---:|---:|---:|",
                f"| effective batch (examples per optimizer step) | {b.get('effective_batch', NOT_MEASURED)} | {a.get('effective_batch', NOT_MEASURED)} | {fmt_ratio(ratio(rows, 'AFTER', 'effective_batch'))} |",
                f"| optimizer steps/s | {num(b.get('steps_per_s'))} | {num(a.get('steps_per_s'))} | {fmt_ratio(steps)} |",
                f"| tokens/s | {num(b.get('tokens_per_s'), ',.0f')} | {num(a.get('tokens_per_s'), ',.0f')} | {fmt_ratio(tokens)} |",
                f"| peak memory | {fmt_mem(b.get('peak_mem_bytes'))} | {fmt_mem(a.get('peak_mem_bytes'))} | {fmt_ratio(ratio(rows, 'AFTER', 'peak_mem_bytes'))} |",
                f"| padding share | {num(b.get('pad_fraction'))} | {num(a.get('pad_fraction'))} | |",
                f"| train loss | {num(b.get('train_loss'), '.4f')} | {num(a.get('train_loss'), '.4f')} | |", "",
                "The seed's it/s is HF's progress bar: optimizer steps per second. Accumulation 8 -> 4 halves the "
                "examples (and tokens) per optimizer step, so steps/s roughly doubles at equal throughput: steps/s "
                "is the seed's comparison, tokens/s the comparison at equal work. This table compares AFTER with "
                "BEFORE; the table in section 2 shows each argument alone.",
                f"Verdict rule: holds at a ratio >= {COMBINED_LOW:g} (the low end of the seed's range).",
                f"Ablation, AFTER vs BEFORE: {_overall(ablation)}."]
    device = str(a.get("device", ""))
    if not device.startswith("cuda"):
        evidence.append(f"Measured on `{device}`; the seed's figure is for an H100, so this is this machine's answer.")
    band = timing_band(rows)
    evidence.append(band_note(rows))
    per_step, per_token = speed_verdict(steps, COMBINED_LOW, band), speed_verdict(tokens, COMBINED_LOW, band)
    return _verdict(title, f"per optimizer step ({fmt_ratio(steps)}): {per_step}; per token ({fmt_ratio(tokens)}): {per_token}",
                    evidence)


def _overall(ablation: dict[str, Any] | None) -> str:
    if not ablation or "baseline_vs_candidate" not in ablation:
        return NOT_MEASURED
    first = ablation.get("first_divergence") or {}
    where = f" from step {first.get('step')} ({first.get('channel')})" if first.get("channel") else ""
    status = ablation["baseline_vs_candidate"]
    return f"{status}{where}" + (": AFTER is a different training, not only a faster one" if status == "DIFFERENT" else "")


def claim_utilisation(rows: dict[str, dict[str, Any]]) -> list[str]:
    title = f'"GPU ~{UTIL_BEFORE_CLAIM:g}% -> 85-95% utilised"'
    b, a = rows.get("BEFORE", {}).get("gpu_util"), rows.get("AFTER", {}).get("gpu_util")
    if "BEFORE" in rows and not str(rows["BEFORE"].get("device", "")).startswith("cuda"):
        return _verdict(title, UNMEASURABLE, [f"The runs are on `{rows['BEFORE'].get('device')}`: no GPU to sample."])
    if not isinstance(b, (int, float)) or not isinstance(a, (int, float)):
        return _verdict(title, NOT_MEASURED, ["The speed benchmark has no GPU utilisation for BEFORE and AFTER."])
    return _verdict(title, HOLDS if a >= UTIL_AFTER_LOW else FAILS,
                    [f"Mean GPU utilisation over the timed steps: BEFORE {b:.1f}% (seed: ~{UTIL_BEFORE_CLAIM:g}%), AFTER "
                     f"{a:.1f}% ({fmt_ratio(ratio(rows, 'AFTER', 'gpu_util'))}). Verdict rule: holds when AFTER is "
                     f">= {UTIL_AFTER_LOW:g}%."])


def section_claims(report, ablation, speed) -> list[str]:  # type: ignore[no-untyped-def]
    rows, ts = speed_rows(speed), toggles(ablation)
    lines = ["## 3. The seed's claims", ""]
    if speed and speed.get("failed"):
        lines += [f"Configurations that failed in the speed benchmark (their numbers are {NOT_MEASURED}): "
                  + ", ".join(f"`{f}`" for f in speed["failed"]) + ".", ""]
    lines += claim_tf32(rows, ts) + claim_checkpointing(rows, ts) + claim_seq_length(speed, rows, ts)
    lines += claim_loaders(rows, ts) + claim_pinning(report) + claim_combined(rows, ablation) + claim_utilisation(rows)
    lines += _verdict('"Library updates: 2-3x speedup alone"', UNMEASURABLE,
                      ["Both sides run the same installed transformers, accelerate and datasets (out of scope, section 1)."])
    return lines


def _pair_budget(pair: str | None, device: str) -> int | None:
    """The pair file's step budget on `device`, or None where the pair cannot be loaded here."""
    if not pair:
        return None
    try:
        from parity.pairs import load_pair

        return load_pair(pair).sides()[0].budget(device)
    except Exception:  # an unknown or unreadable pair: the report's own step count is then printed explicitly
        return None


def section_reproduce(args: argparse.Namespace, report, ablation, speed) -> list[str]:  # type: ignore[no-untyped-def]
    rows = speed_rows(speed)
    pair = pair_name(report, ablation)
    device = device_of(report, {}) or device_of(None, rows)
    flag = " --device cuda" if device and device.startswith("cuda") else ""
    steps = (((report or {}).get("sides") or {}).get("baseline") or {}).get("steps")
    budget = _pair_budget(pair, "cuda" if flag else "cpu")
    steps_flag = f" --steps {steps}" if isinstance(steps, int) and steps != budget else ""
    lines = ["## 4. Reproduce", "", "From the project root:", "", "```bash"]
    if args.report:
        lines.append(f"parity report --pair {pair}{flag}{steps_flag} --format json -o {shlex.quote(args.report)}" if pair else
                     f"# {args.report}: the report does not record its pair")
    if args.ablation:
        ablation_steps = f" --steps {args.ablation_steps}" if args.ablation_steps else ""
        lines.append(f"parity ablate --pair {pair}{flag} --jobs 2{ablation_steps} --format json -o {shlex.quote(args.ablation)}" if pair else
                     f"# {args.ablation}: the ablation does not record its pair")
    if args.speed:
        command = (speed or {}).get("command")
        lines.append("python benchmarks/hf_sft_speed.py " + shlex.join(command) if isinstance(command, list) else
                     f"# {args.speed}: the speed JSON does not record its command")
    own = ["python -m implementations.hf_sft_optimized.claims"]
    for name in ("report", "ablation", "speed"):
        if getattr(args, name):
            own.append(f"--{name} {shlex.quote(getattr(args, name))}")
    if args.ablation_steps:
        own.append(f"--ablation-steps {args.ablation_steps}")
    if args.output:
        own.append(f"-o {shlex.quote(args.output)}")
    lines += [" ".join(own), "```", ""]
    notes = []
    if args.report or args.ablation:
        notes.append("The report and ablation commands are derived: the pair from the ablation's `pair` (else the "
                     "report's run directory), the device from the recorded trainer's `--device`, the report's step "
                     "budget from its recorded runs; neither JSON records its own command line, and the ablation's "
                     "step budget is the one given with --ablation-steps (else the pair's default).")
    if rows.get("BEFORE", {}).get("device"):
        notes.append(f"Speed measured on `{rows['BEFORE']['device']}`, dtype `{rows['BEFORE'].get('dtype', NOT_MEASURED)}`.")
    return lines + notes + ([""] if notes else [])


def render(args: argparse.Namespace, report, ablation, speed) -> str:  # type: ignore[no-untyped-def]
    given = [f"`{getattr(args, n)}`" for n in ("report", "ablation", "speed") if getattr(args, n)]
    lines = ["# Seed 004: the HF Trainer BEFORE/AFTER claims, checked", "",
             f"Generated by `python -m implementations.hf_sft_optimized.claims` from {', '.join(given)}. Every measured "
             "number below is read from those files (an input left out or a field it lacks reads 'not measured'); "
             "the seed's figures and the verdict thresholds are stated beside the verdicts they decide.", "",
             *section_diff(report), *section_toggles(ablation, speed_rows(speed)),
             *section_claims(report, ablation, speed), *section_reproduce(args, report, ablation, speed)]
    return "\n".join(lines)


def _check_output(path: str) -> None:
    if os.path.isdir(path):
        raise ClaimsInputError(f"{path}: is a directory; give a file name (-o)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ClaimsInputError(f"{parent}: no such directory (-o)")


def _write(path: str, text: str) -> None:
    """Atomically: a reader never sees half a document."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".claims-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m implementations.hf_sft_optimized.claims", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", help="JSON from `parity report --pair ... --format json`")
    p.add_argument("--ablation", help="JSON from `parity ablate --pair ... --format json`")
    p.add_argument("--speed", help="JSON from `python benchmarks/hf_sft_speed.py ... --json`")
    p.add_argument("--ablation-steps", type=int, default=None,
                   help="the --steps the ablation ran with, for the Reproduce block (its JSON does not record it)")
    p.add_argument("-o", "--output", help="markdown file (default: stdout)")
    args = p.parse_args(argv)
    if not (args.report or args.ablation or args.speed):
        p.error("give at least one of --report, --ablation, --speed")
    try:
        if args.output:
            _check_output(args.output)
        report = _load(args.report, "report", "checks")
        ablation = _load(args.ablation, "ablation", "toggles")
        speed = _load(args.speed, "speed", "rows")
    except ClaimsInputError as exc:
        print(f"claims: error: {exc}", file=sys.stderr)
        return 2
    text = render(args, report, ablation, speed)
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
