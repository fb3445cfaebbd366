"""Goldens: environment ids, provenance, save/load round trips, refusals, concurrent saves, change summaries."""

from __future__ import annotations

import json
import lzma
import multiprocessing
import os
import random
import re
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from parity.checks.compare import compare_traces
from parity.exceptions import GoldenError, GoldenMissingError, ParityError
from parity.golden import (environment_id, golden_change_summary, list_environments, load_golden,
                           provenance_from_header, provenance_mismatches, read_environment_facts, save_golden)
from parity.golden.store import DATA_FILE, INDEX_FILE, LOCK_FILE
from parity.trace import schema
from parity.trace.reader import load_trace
from parity.trace.writer import TraceWriter

from conftest import record_toy_in_process

CPU_META = {"device": "cpu", "torch": "2.13.0+cpu", "cuda": None, "platform": "Linux-6.1-x86_64-with-glibc2.36",
            "hostname": "box", "load": [1.0, 1.0, 1.0], "numerics": {"num_threads": 1, "deterministic_algorithms": False}}


# -- record factories ------------------------------------------------------------------------------

def _scalar(value: float, dtype: str = "float32") -> dict:
    """A recorded scalar as capture writes it: exact bits in its dtype, and the value those bits hold."""
    if dtype == "float64":
        bits = f"{struct.unpack('<Q', struct.pack('<d', value))[0]:016x}"
    elif dtype == "bfloat16":
        bits = f"{struct.unpack('<I', struct.pack('<f', value))[0] >> 16:04x}"
        value = struct.unpack("<f", struct.pack("<I", int(bits, 16) << 16))[0]
    else:
        bits = f"{struct.unpack('<I', struct.pack('<f', value))[0]:08x}"
        value = struct.unpack("<f", struct.pack("<f", value))[0]
    shown = "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else value
    return {"bits": bits, "dtype": dtype, "value": shown}


def _header(**meta: object) -> dict:
    return {"type": "header", "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0, "pid": 4242,
            "level": "full", "seed": 0, "deterministic": False, "skip_loads": [], "digest": "sum64+wsum64-splitmix/2",
            "meta": {**CPU_META, **meta}}


def _step(step: int, rng: random.Random, loss: float, params: str | None = None) -> dict:
    """A full-level step record whose digests are random, as real digests are (they do not compress)."""
    batch = f"{rng.getrandbits(64):016x}"
    return {"type": "step", "step": step, "events": ["next(batch)", "zero_grad", "forward", "backward",
                                                     "clip_grad_norm", "optimizer.step", "scheduler.step"],
            "losses": [_scalar(loss)], "groups": [{"lr": 0.001 * min(1.0, (step + 1) / 100), "initial_lr": 0.001,
                                                   "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.01}],
            "grad_norm": {**_scalar(rng.random()), "source": "clip_grad_norm_"},
            "clip": {"max_norm": 1.0, "norm_type": 2.0}, "batch": [f"Sequential:{batch}"],
            "loader": [f"{rng.getrandbits(64):016x}"], "fields": [{"0": batch, "1": f"{rng.getrandbits(64):016x}"}],
            "samples": f"{rng.getrandbits(64):016x}",
            "labels": {"field": "1", "hist": {str(k): rng.randint(0, 8) for k in range(10)}}, "epoch": step // 16,
            "mode": {"root": "Sequential", "training": True, "eval_modules": [], "n_eval": 0},
            "params": params or f"{rng.getrandbits(64):016x}", "optim_state": f"{rng.getrandbits(64):016x}",
            "rng": {"torch": f"{rng.getrandbits(32):08x}"}, "wall_ms": rng.random() * 100,
            "peak_mem_bytes": 1 << 20, "skipped": False}


def _write_trace(directory: Path, steps: int, *, seed: int = 0, plant_at: int | None = None,
                 header: dict | None = None, extra_steps: list[dict] | None = None) -> Path:
    """A synthetic run directory through the real writer; `plant_at` changes the loss from that step on."""
    rng = random.Random(seed)
    writer = TraceWriter(directory, 0)
    writer.write(header or _header())
    writer.write({"type": "meta", "key": "argparse", "value": {"lr": 0.001, "steps": steps}})
    params_rng = random.Random(1000)  # parameter digests shared by both sides until the planted step
    for step in range(steps):
        loss = 2.3 * (1 - step / (2 * steps)) + rng.random() * 0.01
        params = f"{params_rng.getrandbits(64):016x}"
        if plant_at is not None and step >= plant_at:
            loss, params = loss * 1.01, f"{step:016x}"  # drawing from `rng` here would shift later losses
        writer.write(_step(step, random.Random(seed * 1_000_003 + step), loss, params))
    for record in extra_steps or []:
        writer.write(record)
    writer.write({"type": "end", "status": "ok", "steps": steps + len(extra_steps or []), "load": [1.0, 1.0, 1.0]})
    writer.close()
    return directory


def _save(run: Path, goldens: Path, pair: str = "toy") -> Path:
    return save_golden(run, goldens, pair_name=pair, pair_file_hash="a" * 64, code_revision="abc123")


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 5-step run of the toy trainer (recorded in this process: the launcher has tests of its own)."""
    return record_toy_in_process(tmp_path_factory.mktemp("recorded") / "run", "train.py", "--steps", "5")


# -- environment ids and provenance ----------------------------------------------------------------

def test_environment_id_of_a_recorded_header(recorded_run: Path) -> None:
    header = load_trace(recorded_run / "trace-rank0.jsonl").header
    threads = header["meta"]["numerics"]["num_threads"]
    # Capture records the vector capability torch dispatches CPU kernels to: it names the environment.
    capability = header["meta"]["cpu_capability"].lower()
    assert environment_id(header["meta"]) == f"cpu-x86_64-{capability}-torch2.13-threads{threads}"


@pytest.mark.parametrize("meta, expected", [
    (CPU_META, "cpu-x86_64-torch2.13-threads1"),
    ({**CPU_META, "cpu_capability": "AVX2"}, "cpu-x86_64-avx2-torch2.13-threads1"),
    ({**CPU_META, "platform": "macOS-14.2-arm64-arm-64bit", "numerics": {"num_threads": 8}},
     "cpu-aarch64-torch2.13-threads8"),
    ({**CPU_META, "platform": "Windows-10-10.0.19041-SP0"}, "cpu-torch2.13-threads1"),
    ({"device": "NVIDIA H200", "torch": "2.11.0+cu128", "cuda": "12.8", "numerics": {"num_threads": 4}},
     "cuda-h200-torch2.11-cuda12.8"),
    ({"device": "NVIDIA A100-SXM4-80GB", "torch": "2.4.1", "cuda": "12.1", "cudnn": 90100},
     "cuda-a100-sxm4-80gb-torch2.4-cuda12.1-cudnn90100"),
])
def test_environment_id_from_synthetic_headers(meta: dict, expected: str) -> None:
    assert environment_id(meta) == expected


@pytest.mark.parametrize("meta, message", [
    ({"torch": "2.13.0"}, "no 'device'"),
    ({"device": "cpu"}, "no 'torch'"),
    ({"device": "cpu", "torch": "nightly"}, "no 'torch'"),
])
def test_environment_id_refuses_a_header_without_device_or_torch(meta: dict, message: str) -> None:
    with pytest.raises(GoldenError, match=message):
        environment_id(meta)


def test_environment_facts_of_this_process_name_the_vector_capability() -> None:
    import torch

    facts = read_environment_facts()
    env = environment_id({**CPU_META, **facts})
    assert torch.backends.cpu.get_cpu_capability().lower() in env.split("-")


def test_provenance_mismatches_name_each_differing_field() -> None:
    stored = provenance_from_header(_header(), pair_file_hash="h1", code_revision="r1", date="2026-01-01T00:00:00+00:00")
    assert provenance_mismatches(stored, stored) == []
    current = provenance_from_header(
        _header(torch="2.12.1+cpu", numerics={"num_threads": 4, "deterministic_algorithms": True}),
        pair_file_hash="h2", code_revision="r2")  # another revision and date: what a gate compares, not noise
    assert provenance_mismatches(stored, current) == [
        "torch: golden 2.13.0+cpu, this run 2.12.1+cpu",
        "threads: golden 1, this run 4",
        "deterministic.deterministic_algorithms: golden False, this run True",
    ]
    with_capability = replace(stored, cpu_capability="AVX512")
    assert provenance_mismatches(stored, with_capability) == ["cpu_capability: golden not recorded, this run AVX512"]


# -- save and load ---------------------------------------------------------------------------------

def test_round_trip_of_a_recorded_run_is_identical(recorded_run: Path, tmp_path: Path) -> None:
    original = load_trace(recorded_run / "trace-rank0.jsonl")
    env_dir = _save(recorded_run, tmp_path)
    assert env_dir == tmp_path / "toy" / environment_id(original.header["meta"])
    assert sorted(p.name for p in env_dir.iterdir()) == [INDEX_FILE, DATA_FILE]
    golden, provenance = load_golden(tmp_path, "toy", env_dir.name)
    comparison = compare_traces(golden, original)
    assert comparison.verdict == schema.IDENTICAL
    assert {f.name: f.status for f in comparison.findings if f.status != schema.IDENTICAL} == {}
    assert golden.complete and len(golden.steps) == 5
    assert (provenance.torch, provenance.device, provenance.pair_file_hash, provenance.code_revision) == \
        (original.header["meta"]["torch"], "cpu", "a" * 64, "abc123")


def test_golden_keeps_every_checked_field_and_drops_timings(tmp_path: Path) -> None:
    extra = [_step(20, random.Random(5), 1.0)]
    extra[0]["losses"] = [_scalar(float("nan")), _scalar(-0.0, "float64"), _scalar(1.7, "bfloat16"),
                          {**_scalar(0.25), "scale": _scalar(65536.0)}]
    run = _write_trace(tmp_path / "run", 20, extra_steps=extra)
    original = load_trace(run / "trace-rank0.jsonl")
    golden, _ = load_golden(tmp_path / "g", "toy", _save(run, tmp_path / "g").name)
    not_stored = {"wall_ms", "peak_mem_bytes", "rng"}
    assert golden.steps == [{k: v for k, v in s.items() if k not in not_stored} for s in original.steps]
    assert golden.meta == original.meta
    assert "pid" not in golden.header and "hostname" not in golden.header["meta"]


def test_saving_the_same_trace_again_writes_the_same_bytes(tmp_path: Path) -> None:
    run = _write_trace(tmp_path / "run", 50)
    first = (_save(run, tmp_path / "g") / DATA_FILE).read_bytes()
    assert (_save(run, tmp_path / "g") / DATA_FILE).read_bytes() == first


def test_a_10000_step_golden_is_under_1_mb(tmp_path: Path) -> None:
    run = _write_trace(tmp_path / "run", 10_000)
    env_dir = _save(run, tmp_path / "g")
    size = (env_dir / DATA_FILE).stat().st_size
    assert size < 1_000_000, f"{size} bytes"
    golden, _ = load_golden(tmp_path / "g", "toy", env_dir.name)
    assert len(golden.steps) == 10_000
    assert golden.steps[-1]["losses"] == load_trace(run / "trace-rank0.jsonl").steps[-1]["losses"]


# -- refusals --------------------------------------------------------------------------------------

def _truncate(env_dir: Path) -> None:
    data = (env_dir / DATA_FILE).read_bytes()
    (env_dir / DATA_FILE).write_bytes(data[: len(data) // 2])


def _edit_by_hand(env_dir: Path) -> None:
    """Change one loss in the decompressed trace and compress it again: valid xz, wrong checksum."""
    text = lzma.decompress((env_dir / DATA_FILE).read_bytes()).decode()
    text = re.sub(r'"bits":"[0-9a-f]{8}"', '"bits":"3f800000"', text, count=1)
    (env_dir / DATA_FILE).write_bytes(lzma.compress(text.encode()))


def _set_version(env_dir: Path) -> None:
    index = json.loads((env_dir / INDEX_FILE).read_text())
    (env_dir / INDEX_FILE).write_text(json.dumps({**index, "version": 99}))


@pytest.mark.parametrize("damage, error, message", [
    (_truncate, GoldenError, r"trace\.jsonl\.xz: checksum mismatch .*truncated or edited by hand"),
    (_edit_by_hand, GoldenError, r"trace\.jsonl\.xz: checksum mismatch"),
    (_set_version, GoldenError, r"golden\.json: wrong schema: version 99 instead of 1"),
    (lambda d: (d / DATA_FILE).unlink(), GoldenError, r"trace\.jsonl\.xz: missing golden data file"),
    (lambda d: (d / INDEX_FILE).unlink(), GoldenError, r"golden\.json: missing file"),
    (lambda d: (d / INDEX_FILE).write_text("{not json"), GoldenError, r"golden\.json:1: not valid JSON"),
], ids=["truncated", "hand-edited", "schema-version", "no-data-file", "no-index", "index-not-json"])
def test_load_refuses_a_damaged_golden(tmp_path: Path, damage, error: type, message: str) -> None:
    env_dir = _save(_write_trace(tmp_path / "run", 30), tmp_path / "g")
    damage(env_dir)
    with pytest.raises(error, match=message) as caught:
        load_golden(tmp_path / "g", "toy", env_dir.name)
    assert isinstance(caught.value, ParityError) and "\n" not in str(caught.value)


def test_load_refuses_an_unknown_environment_listing_those_stored(tmp_path: Path) -> None:
    _save(_write_trace(tmp_path / "a", 3), tmp_path / "g")
    _save(_write_trace(tmp_path / "b", 3, header=_header(cpu_capability="AVX2")), tmp_path / "g")
    assert list_environments(tmp_path / "g", "toy") == ["cpu-x86_64-avx2-torch2.13-threads1",
                                                        "cpu-x86_64-torch2.13-threads1"]
    with pytest.raises(GoldenMissingError, match=r"for environment 'cuda-h200-torch2.11' \(stored environments: "
                                                 r"cpu-x86_64-avx2-torch2.13-threads1, cpu-x86_64-torch2.13-threads1\)"):
        load_golden(tmp_path / "g", "toy", "cuda-h200-torch2.11")
    with pytest.raises(GoldenMissingError, match=r"none stored under"):
        load_golden(tmp_path / "g", "other-pair", "cpu-x86_64-torch2.13-threads1")


@pytest.mark.parametrize("pair", ["../escape", "", "a/b", ".."])
def test_save_refuses_a_pair_name_that_is_not_a_folder_name(tmp_path: Path, pair: str) -> None:
    with pytest.raises(GoldenError, match="pair name .*: expected a plain folder name"):
        save_golden(_write_trace(tmp_path / "run", 2), tmp_path / "g", pair_name=pair, pair_file_hash=None,
                    code_revision=None)


# -- concurrency -----------------------------------------------------------------------------------

def _save_repeatedly(run: str, goldens: str, times: int) -> None:
    for _ in range(times):
        _save(Path(run), Path(goldens))


def _load_repeatedly(goldens: str, env: str, times: int, failures: multiprocessing.Queue) -> None:
    for _ in range(times):
        try:
            load_golden(goldens, "toy", env)
        except ParityError as exc:
            failures.put(str(exc))


def test_parallel_saves_never_corrupt_the_golden(tmp_path: Path) -> None:
    runs = [_write_trace(tmp_path / f"run{i}", 300, seed=i) for i in range(2)]
    env = _save(runs[0], tmp_path / "g").name  # both traces share one environment, so they race for one folder
    context = multiprocessing.get_context("fork")  # children only run the store; no torch work after fork
    failures = context.Queue()
    workers = [context.Process(target=_save_repeatedly, args=(str(run), str(tmp_path / "g"), 15)) for run in runs]
    workers.append(context.Process(target=_load_repeatedly, args=(str(tmp_path / "g"), env, 30, failures)))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert failures.empty(), failures.get()
    golden, _ = load_golden(tmp_path / "g", "toy", env)
    candidates = [load_trace(run / "trace-rank0.jsonl") for run in runs]
    assert any(compare_traces(golden, c).verdict == schema.IDENTICAL for c in candidates)
    left = sorted(p.name for p in (tmp_path / "g" / "toy" / env).iterdir())
    assert left == [INDEX_FILE, DATA_FILE], "a temporary file was left behind"
    assert (tmp_path / "g" / "toy" / LOCK_FILE).exists()


# -- change summary --------------------------------------------------------------------------------

def test_change_summary_names_the_first_divergent_step_and_channel(tmp_path: Path) -> None:
    old = load_trace(_write_trace(tmp_path / "old", 20) / "trace-rank0.jsonl")
    new = load_trace(_write_trace(tmp_path / "new", 20, plant_at=7) / "trace-rank0.jsonl")
    summary = golden_change_summary(old, new)
    assert "| loss | DIFFERENT | 7 |" in summary
    assert "- First divergence: step 7, channel `loss`" in summary
    assert re.search(r"- Final loss: .*relative change \+0\.01\b", summary)
    assert "- Final parameters digest: changed" in summary
    unchanged = golden_change_summary(old, old)
    assert "Every compared check is bit-identical" in unchanged and "- Final parameters digest: unchanged" in unchanged
    assert "- Not compared (not recorded on both sides): model" in unchanged  # the factories record no model
