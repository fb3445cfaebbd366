"""Seed-004 SFT pair: data generator, byte tokenizer, collator, the BEFORE/AFTER argument sets, and the recorded CPU pair."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reference.hf_sft import data
from reference.hf_sft.tokenizer import ByteTokenizer


class _ImportedOnUse:
    """A module imported when first used: the trainers import transformers (several seconds), which every
    pytest worker would otherwise pay while collecting this file, whether or not it runs these tests."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
        if attr.startswith("_"):  # what collection looks for on every module attribute (__pytest_wrapped__, ...)
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


after = _ImportedOnUse("implementations.hf_sft_optimized.train")
before = _ImportedOnUse("reference.hf_sft.train")

REPO = Path(__file__).resolve().parents[2]
#: TrainingArguments fields the seed's AFTER version sets differently (max_seq_length is the script's own setting).
SEED_CHANGED = {"gradient_accumulation_steps", "tf32", "dataloader_num_workers", "dataloader_pin_memory",
                "dataloader_prefetch_factor", "gradient_checkpointing"}


def _args(module, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    defaults = after.AFTER if module is after else before.BEFORE
    return before.build_parser(defaults, prog="test").parse_args(
        ["--data_path", str(tmp_path / "d.jsonl"), "--output_dir", str(tmp_path / "out"), *extra])


def _lengths(examples: list[dict[str, str]]) -> list[int]:
    return [ByteTokenizer().num_tokens(data.as_text(e)) for e in examples]


def test_generator_is_deterministic_per_seed() -> None:
    assert data.generate(30, seed=3) == data.generate(30, seed=3)
    assert data.generate(30, seed=3) != data.generate(30, seed=4)
    # The i-th example does not depend on how many come before or after it.
    assert data.generate(10, seed=3) == data.generate(30, seed=3)[:10]


def test_some_examples_exceed_1536_tokens_and_none_2048() -> None:
    lengths = _lengths(data.generate(400, seed=0))
    assert sum(n > 1536 for n in lengths) >= 5
    assert max(lengths) <= 2000 and not any(n > 2048 for n in lengths)
    assert max(n for n in lengths if n <= 1536) <= 1481  # the seed's "data max=1481" for the bulk


def test_scale_keeps_which_examples_are_truncated() -> None:
    full, quarter = _lengths(data.generate(300, seed=1)), _lengths(data.generate(300, seed=1, scale=4))
    assert [n > 1536 for n in full] == [n > 1536 // 4 for n in quarter]


def test_examples_have_prompt_reasoning_and_answer() -> None:
    example = data.generate(1, seed=0)[0]
    assert example["prompt"].startswith("Question:") and example["reasoning"].startswith("Step 1:")
    last = [line for line in example["reasoning"].splitlines() if line.startswith("Step")][-1]
    assert example["answer"] == f"Answer: {last.rstrip('.').split(' = ')[-1]}"


@pytest.mark.parametrize("text", ["", "Step 1: 2 + 2 = 4.\n", "naïve café ✓ 数字"])
def test_tokenizer_round_trips(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == tok.num_tokens(text)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=False) == f"<s>{text}</s>"
    assert tok.encode(text, max_length=3) == ids[:3]


def test_tokenizer_rejects_ids_outside_its_vocabulary() -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ByteTokenizer().decode([65, 300])


def test_collator_pads_per_batch_and_masks_labels() -> None:
    features = [data.tokenize({"prompt": "ab", "reasoning": "", "answer": ""}, ByteTokenizer(), 8),
                data.tokenize({"prompt": "abcdef", "reasoning": "", "answer": ""}, ByteTokenizer(), 5)]
    batch = data.PadCollator(ByteTokenizer.pad_token_id)(features)
    assert batch["input_ids"].shape == (2, 5)  # the longest sequence after truncation, not max_length
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0]
    assert batch["labels"][0, -1].item() == -100 and batch["input_ids"][0, -1].item() == ByteTokenizer.pad_token_id
    assert batch["labels"][1].tolist() == batch["input_ids"][1].tolist()


def test_optimized_package_imports_everything_else_from_reference() -> None:
    package = REPO / "implementations" / "hf_sft_optimized"
    # The trainer is train.py alone; claims.py is the seed-004 report tool, not part of the training code.
    assert sorted(p.name for p in package.glob("*.py")) == ["__init__.py", "claims.py", "train.py"]
    imported = [node.module for node in ast.walk(ast.parse((package / "train.py").read_text()))
                if isinstance(node, ast.ImportFrom)]
    assert [m for m in imported if m not in ("__future__", "typing")] == ["reference.hf_sft.train"]
    assert after.run is before.run


def test_scripts_differ_exactly_in_the_seeds_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a bf16 GPU, where the seed ran; seed_arguments builds keyword arguments only, no GPU is touched.
    monkeypatch.setattr(before.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    old, new = (before.seed_arguments(_args(m, tmp_path), "cuda") for m in (before, after))
    changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    assert changed == SEED_CHANGED
    assert {k: new[k] for k in changed} == {k: after.AFTER[k] for k in changed}
    assert old["bf16"] and not old["fp16"] and old["optim"] == "adamw_torch" and old["save_steps"] == 100
    assert (_args(before, tmp_path).max_seq_length, _args(after, tmp_path).max_seq_length) == (2048, 1536)


def test_cpu_training_arguments_keep_what_a_cpu_can_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = (before.training_arguments(_args(m, tmp_path), "cpu").to_dict() for m in (before, after))
    changed = {k for k in old if old[k] != new[k]}
    # tf32 is left unset on a CPU, and use_cpu turns pinning off on both sides.
    assert changed == {"gradient_accumulation_steps", "dataloader_num_workers", "dataloader_prefetch_factor",
                       "gradient_checkpointing", "activation_checkpointing"}
    assert not old["bf16"] and not old["fp16"] and new["tf32"] is None
    assert "--tf32 True ignored" in capsys.readouterr().err


def test_prefetch_without_workers_is_dropped_not_refused(tmp_path: Path) -> None:
    args = _args(before, tmp_path, "--dataloader_prefetch_factor", "4")
    assert before.training_arguments(args, "cpu").dataloader_prefetch_factor is None


@pytest.mark.parametrize("flag, value", [("--tf32", "maybe"), ("--dataloader_prefetch_factor", "four"),
                                         ("--gradient_checkpointing", "2")])
def test_bad_flag_values_are_refused(tmp_path: Path, flag: str, value: str) -> None:
    with pytest.raises(SystemExit):
        _args(before, tmp_path, flag, value)


@pytest.mark.slow
def test_cpu_pair_is_different_and_names_the_changed_training_arguments(tmp_path: Path) -> None:
    from conftest import record_pair_side
    from parity import session

    # The pair's own sides and budget, through the run cache its gate item uses: the candidate is recorded once.
    pair = session.load("hf-trainer-before-vs-after")
    steps = pair.candidate.budget("cpu", None)
    runs = [record_pair_side(side, tmp_path / side.name, steps) for side in pair.sides()]
    comparison = session.compare(*runs, ignore_args=pair.ignore_args, tolerances=session.tolerances(pair))
    assert comparison.verdict == "DIFFERENT"
    config = comparison.finding("config")
    # Found in the TrainingArguments the Trainer holds, not only in the script's own parsed flags.
    found = [c["path"] for c in config.evidence["changes"] if "config_objects" in c["path"] and "run:args" not in c["path"]]
    for name in ("gradient_accumulation_steps", "dataloader_num_workers", "dataloader_prefetch_factor",
                 "gradient_checkpointing"):
        assert any(path.endswith(f"['{name}']") for path in found), found
    assert comparison.finding("lr_schedule").status == "IDENTICAL"


@pytest.mark.slow
def test_benchmark_runs_on_cpu_with_the_tiny_preset(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    cmd = [sys.executable, "benchmarks/hf_sft_speed.py", "--model_size", "tiny", "--device", "cpu", "--scale", "4",
           "--steps", "3", "--skip", "1", "--n", "200", "--only", "BEFORE,BEFORE + grad_accum",
           "--pair", "hf-trainer-before-vs-after", "--workdir", str(tmp_path), "--json", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| BEFORE + grad_accum" in done.stdout and "truncated at 512: 0, at 384:" in done.stdout
    assert "device: cpu" in done.stdout and "dtype: fp32" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["effective_batch"] for r in rows] == [16, 8] and all(r["gpu_util"] is None for r in rows)
