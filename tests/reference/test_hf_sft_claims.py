"""implementations.hf_sft_optimized.claims: verdicts from synthetic report/ablation/speed JSON, not measured, bad input."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from implementations.hf_sft_optimized import claims

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOGGLES = ("grad_accum", "max_seq_length", "tf32", "dataloader_workers", "pin_memory", "prefetch_factor",
           "gradient_checkpointing")


# Factories shaped like the real files (runs/claims/*.json from the CPU pair and benchmarks/hf_sft_speed.py).

def _row(config: str, device: str = "cuda:0", **over):
    row = {"config": config, "side": "after" if config.startswith("AFTER") else "before", "argv": [], "steps": 4,
           "timed_steps": 3, "seconds": 3.0, "steps_per_s": 1.0, "tokens_per_s": 1000.0, "tokens": 4000,
           "pad_fraction": 0.2, "peak_mem_bytes": 10 * 2**30, "gpu_util": 40.0 if device.startswith("cuda") else None,
           "train_loss": 2.0, "device": device, "dtype": "bf16" if device.startswith("cuda") else "fp32",
           "tf32_matmul": "ieee" if device.startswith("cuda") else None, "effective_batch": 16}
    row.update(over)
    return row


def _speed(device: str = "cuda:0", truncation=True, **rows):
    """rows: config label -> overrides; BEFORE, AFTER and every toggle row get defaults."""
    configs = {"BEFORE": {}, "AFTER": {"effective_batch": 8}, **{f"BEFORE + {t}": {} for t in TOGGLES}}
    configs.update(rows)
    data = {"command": ["--model_size", "1b", "--steps", "4", "--json", "s.json"], "failed": [],
            "rows": [_row(c, device, **over) for c, over in configs.items() if over is not None]}
    if truncation:
        data["truncation"] = {"examples": 400, "max_tokens": 480, "truncated_at_2048": 0, "truncated_at_1536": 0}
    return data


def _side(status="IDENTICAL", step=None, channel=None, effect=0.0):
    return {"status": status, "first_divergent_step": step, "channel": channel, "final_loss_rel_change": effect}


def _ablation(**statuses):
    """statuses: toggle -> applied side dict; unnamed toggles are IDENTICAL."""
    toggles = [{"name": t, "baseline_args": [], "candidate_args": [], "metrics": {}, "stability_applied": {},
                "applied_to_baseline": statuses.get(t, _side()), "reverted_on_candidate": statuses.get(t, _side())}
               for t in TOGGLES]
    return {"pair": "gpu-hf-trainer-before-vs-after", "baseline_vs_candidate": "DIFFERENT",
            "first_divergence": {"step": 0, "channel": "data", "diagnosis": "..."}, "noise_floor_final_loss_rel": 0.0,
            "final_loss": {}, "metrics": {}, "stability": {}, "toggles": toggles}


def _change(owner: str, field: str, before, after):
    path = f"root['argparse']['{field}']" if owner == "argparse" else f"root['config_objects']['{owner}']['{field}']"
    return {"path": path, "baseline": before, "candidate": after}


def _report(*changes, device="cuda"):
    argv = ["-m", "--data_path", "d.jsonl", "--device", device]
    config = {"name": "config", "status": "DIFFERENT", "first_divergent_step": None, "summary": "", "affects_training": False,
              "evidence": {"changes": list(changes), "paths": [], "ignored_args": []}}
    return {"verdict": "DIFFERENT", "checks": [config], "first_divergence": None, "noise_floor": None, "causes": [], "code": {},
            "sides": {s: {"path": f"runs/gpu-hf-trainer-before-vs-after/{s}/trace-rank0.jsonl", "steps": 30, "argv": argv}
                      for s in ("baseline", "candidate")}}


DEFAULT_CHANGES = (_change("argparse", "dataloader_pin_memory", None, True),
                   _change("transformers.Trainer.args", "gradient_accumulation_steps", 8, 4),
                   _change("transformers.Trainer.args", "dataloader_num_workers", 0, 4))


def _render(tmp_path, report=None, ablation=None, speed=None) -> str:
    argv = []
    for name, data in (("report", report), ("ablation", ablation), ("speed", speed)):
        if data is not None:
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(data))
            argv += [f"--{name}", str(path)]
    out = tmp_path / "claims.md"
    assert claims.main([*argv, "-o", str(out)]) == 0
    return out.read_text()


def _verdicts(text: str) -> dict[str, str]:
    """### "title" ... **Verdict: X.** as {first word of the title (lowercased): X}."""
    found = re.findall(r'^### "([^"]+)".*?\n\n\*\*Verdict: (.+?)\.\*\*', text, flags=re.M | re.S)
    return {title.split(":")[0].split()[0].lower().strip(","): verdict for title, verdict in found}


def _full(tmp_path, device="cuda:0", report=None, ablation=None, **rows):
    return _render(tmp_path, report or _report(*DEFAULT_CHANGES), ablation or _ablation(), _speed(device, **rows))


# --------------------------------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("tokens, verdict", [(1020.0, "does not hold"), (7500.0, "holds"), (7100.0, "does not hold")])
def test_tf32_verdict_follows_tokens_ratio(tmp_path, tokens, verdict):
    text = _full(tmp_path, **{"BEFORE + tf32": {"tokens_per_s": tokens, "tf32_matmul": "tf32"}})
    assert _verdicts(text)["tf32"] == verdict
    assert "under bf16 autocast" in text  # the rows train in bf16: TF32 only reaches fp32 matmuls


def test_tf32_not_measurable_on_cpu_or_when_the_flag_did_not_switch(tmp_path):
    text = _full(tmp_path, device="cpu", **{"BEFORE + tf32": {"tokens_per_s": 9000.0}})
    assert _verdicts(text)["tf32"] == "not measurable here"
    text = _full(tmp_path, **{"BEFORE + tf32": {"tokens_per_s": 9000.0, "tf32_matmul": "ieee"}})
    assert _verdicts(text)["tf32"] == "not measurable here"


@pytest.mark.parametrize("mem, verdict", [(0.6, "holds"), (0.75, "holds"), (0.9, "does not hold")])
def test_checkpointing_memory_verdict(tmp_path, mem, verdict):
    text = _full(tmp_path, **{"BEFORE + gradient_checkpointing": {"peak_mem_bytes": mem * 10 * 2**30, "steps_per_s": 0.8}})
    assert _verdicts(text)["gradient"] == verdict
    assert "+25.0% time per optimizer step" in text


def test_checkpointing_memory_on_cpu_is_rss_not_measurable(tmp_path):
    text = _full(tmp_path, device="cpu", **{"BEFORE + gradient_checkpointing": {"peak_mem_bytes": 6 * 2**30}})
    assert _verdicts(text)["gradient"] == "not measurable here"


def test_seq_length_truncating_more_examples_is_a_data_change(tmp_path):
    speed = _speed()
    speed["truncation"].update(truncated_at_1536=12)
    text = _render(tmp_path, _report(), _ablation(max_seq_length=_side("DIFFERENT", 0, "data")), speed)
    assert _verdicts(text)["max_seq_length"] == "does not hold"
    assert "12 more examples lose their tail" in text and "DIFFERENT from step 0 (data)" in text


def test_seq_length_cutting_nothing_and_identical_holds(tmp_path):
    assert _verdicts(_full(tmp_path))["max_seq_length"] == "holds"


def test_loader_toggles_same_batches_and_speed(tmp_path):
    text = _full(tmp_path, **{"BEFORE + dataloader_workers": {"tokens_per_s": 1200.0}})
    assert _verdicts(text)["workers"] == ("same batches: holds; speed: `dataloader_workers` faster, `pin_memory` unchanged "
                                          "computation here (a noise reference), `prefetch_factor` unchanged computation "
                                          "here (a noise reference)")
    text = _full(tmp_path, **{"BEFORE + dataloader_workers": {"tokens_per_s": 1000.0}})
    assert "speed: `dataloader_workers` not faster" in _verdicts(text)["workers"]
    text = _full(tmp_path, ablation=_ablation(dataloader_workers=_side("DIFFERENT", 2, "data")))
    assert _verdicts(text)["workers"].startswith("same batches: does not hold")


def test_pinning_disabled_claim_read_from_trainingarguments(tmp_path):
    assert _verdicts(_full(tmp_path))["memory"] == "does not hold"  # field equal on both sides, AFTER passes True
    changed = _report(_change("transformers.Trainer.args", "dataloader_pin_memory", False, True))
    assert _verdicts(_full(tmp_path, report=changed))["memory"] == "holds"
    no_args = _report(_change("argparse", "dataloader_pin_memory", None, True))  # TrainingArguments never recorded
    assert _verdicts(_full(tmp_path, report=no_args))["memory"] == "not measured"


def test_combined_speedup_per_step_and_per_token_tell_different_stories(tmp_path):
    text = _full(tmp_path, AFTER={"steps_per_s": 2.6, "tokens_per_s": 1300.0, "effective_batch": 8})
    assert _verdicts(text)["combined"] == ("per optimizer step (2.600x): holds; per token (1.300x): does not hold")
    assert "| effective batch (examples per optimizer step) | 16 | 8 | 0.500x |" in text


@pytest.mark.parametrize("after, verdict", [(90.0, "holds"), (60.0, "does not hold")])
def test_gpu_utilisation(tmp_path, after, verdict):
    assert _verdicts(_full(tmp_path, AFTER={"gpu_util": after}))["gpu"] == verdict


def test_gpu_utilisation_on_cpu_not_measurable_and_na_in_the_table(tmp_path):
    text = _full(tmp_path, device="cpu")
    assert _verdicts(text)["gpu"] == "not measurable here"
    row = next(line for line in text.splitlines() if line.startswith("| `tf32` |"))
    assert row.endswith("| n/a |")


def test_per_toggle_table_numerics_and_ratios(tmp_path):
    ablation = _ablation(grad_accum=_side("DIFFERENT", 0, "loss", effect=0.5), tf32=_side("EQUIVALENT"))
    text = _full(tmp_path, ablation=ablation, **{"BEFORE + grad_accum": {"steps_per_s": 2.0, "tokens_per_s": 1000.0}})
    row = next(line for line in text.splitlines() if line.startswith("| `grad_accum` |"))
    assert row == ("| `grad_accum` | DIFFERENT from step 0 (loss) | DIFFERENT from step 0 (loss) | +50.000% | 2.000x | "
                   "1.000x | 1.000x | 1.000x |")
    assert "| `tf32` | EQUIVALENT (within the baseline repeat's band) |" in text


def test_trainingarguments_diff_and_flags_that_never_reach_it(tmp_path):
    text = _full(tmp_path)
    assert "| `gradient_accumulation_steps` | `8` | `4` |" in text
    assert "| `--dataloader_pin_memory` | unset (None) | `true` |" in text
    assert "Out of scope" in text and "transformers, accelerate and datasets" in text


def test_reproduce_block_from_the_inputs(tmp_path):
    text = _full(tmp_path)
    block = text.split("## 4. Reproduce")[1]
    assert "parity report --pair gpu-hf-trainer-before-vs-after --device cuda --format json -o" in block
    assert "parity ablate --pair gpu-hf-trainer-before-vs-after --device cuda --jobs 2 --format json -o" in block
    assert "python benchmarks/hf_sft_speed.py --model_size 1b --steps 4 --json s.json" in block
    assert "python -m implementations.hf_sft_optimized.claims --report" in block


# ----------------------------------------------------------------------------------------------- not measured

def test_missing_inputs_read_not_measured(tmp_path):
    text = _render(tmp_path, report=_report(*DEFAULT_CHANGES))
    verdicts = _verdicts(text)
    for key in ("tf32", "gradient", "max_seq_length", "combined", "gpu"):
        assert verdicts[key] == "not measured", key
    assert verdicts["memory"] == "does not hold"  # the report alone decides it
    text = _render(tmp_path, speed=_speed())
    assert "The TrainingArguments diff is not measured" in text
    assert "| `tf32` | not measured | not measured | not measured |" in text


def test_missing_fields_read_not_measured(tmp_path):
    text = _full(tmp_path, truncation=None, **{"BEFORE + gradient_checkpointing": None, "AFTER": {"gpu_util": None}})
    verdicts = _verdicts(text)
    assert verdicts["gradient"] == "not measured" and verdicts["gpu"] == "not measured"
    assert "Truncation counts: not measured." in text
    assert "| `gradient_checkpointing` | IDENTICAL | IDENTICAL | +0.000% | not measured |" in text


# -------------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("content, match", [
    (None, "no such file (--speed)"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not a speed JSON: it needs a list under 'rows'"),
    (json.dumps(_ablation()), "not a speed JSON"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, match):
    path = tmp_path / "speed.json"
    if content is not None:
        path.write_text(content)
    assert claims.main(["--speed", str(path), "-o", str(tmp_path / "out.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("claims: error: ") and match in err
    assert not (tmp_path / "out.md").exists()


def test_bad_output_directory_exit_2(tmp_path, capsys):
    speed = tmp_path / "s.json"
    speed.write_text(json.dumps(_speed()))
    assert claims.main(["--speed", str(speed), "-o", str(tmp_path / "nowhere" / "out.md")]) == 2
    assert "no such directory (-o)" in capsys.readouterr().err


def test_command_line_exit_2_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "implementations.hf_sft_optimized.claims", "--report",
                           str(tmp_path / "missing.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------------ timing noise

def test_noop_rows_set_the_timing_band_and_a_reading_inside_it_decides_nothing(tmp_path):
    noisy = {"BEFORE + prefetch_factor": {"tokens_per_s": 500.0}, "BEFORE + pin_memory": {"tokens_per_s": 1200.0}}
    # 2.6x per step would hold, but the band 0.5x-1.2x puts a true 2.4x anywhere in 1.2x-2.88x
    text = _full(tmp_path, AFTER={"steps_per_s": 2.6, "tokens_per_s": 1000.0}, **noisy)
    assert _verdicts(text)["combined"] == ("per optimizer step (2.600x): not measurable here (within this run's timing "
                                           "noise); per token (1.000x): does not hold")
    assert "read 0.500x-1.200x BEFORE's tokens/s" in text
    loaders = _verdicts(text)["workers"]
    assert "`prefetch_factor` unchanged computation here (a noise reference)" in loaders
    text = _full(tmp_path, AFTER={"steps_per_s": 3.0}, **noisy)
    assert _verdicts(text)["combined"].startswith("per optimizer step (3.000x): holds")


def test_without_noop_rows_timing_noise_is_not_measured(tmp_path):
    text = _full(tmp_path, **{"BEFORE + prefetch_factor": None, "BEFORE + pin_memory": None})
    assert "Timing noise: not measured" in text
