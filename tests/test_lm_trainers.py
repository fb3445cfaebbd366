"""Seed 002's LM trainers: corpus, fetch timeout, samples and packing, checkpoint sets, both trainers' --test runs,
exact resume, and parity recording both."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import parity
from implementations.lm_chunked import train as chunked
from parity.trace.reader import load_run
from reference.lm_sample import checkpoints, corpus
from reference.lm_sample import train as sample
from reference.lm_sample.config import TrainingConfig
from reference.lm_sample.data import (IGNORE_INDEX, Batch, DataFetchTimeout, TimedFetcher, TokenPacker, document_sample,
                                      packed_rows)
from reference.lm_sample.metrics import METRICS_SCHEMA, SAMPLES_SCHEMA, moving_average
from reference.lm_sample.session import TrainingSession
from reference.lm_sample.tokenizer import ByteTokenizer, load_tokenizer, sentencepiece_available

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(output: Path) -> list[dict]:
    return json.loads((output / "training_viz" / "metrics_history.json").read_text())["metrics"]


def _slow(items: list[str], delay: float):  # type: ignore[no-untyped-def]
    for item in items:
        time.sleep(delay)
        yield item


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("shards")
    corpus.write_corpus(directory, shards=2, docs_per_shard=60, seed=0)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, shards: Path) -> dict[str, Path]:
    """Both trainers' --test runs on the same shards (sample: 10 steps, chunked: 6 chunks, tiny preset, CPU)."""
    base = tmp_path_factory.mktemp("runs")
    common = ["--test", "--device", "cpu", "--seed", "0", "--data-dir", str(shards)]
    assert sample.main([*common, "--output-dir", str(base / "sample")]) == 0
    assert chunked.main([*common, "--output-dir", str(base / "chunked"), "--viz-interval", "6"]) == 0
    return {"sample": base / "sample", "chunked": base / "chunked"}


# -- corpus, tokenizers, data ---------------------------------------------------------------------
def test_corpus_is_deterministic_and_shards_are_independent(tmp_path: Path) -> None:
    a = corpus.write_corpus(tmp_path / "a", shards=2, docs_per_shard=5, seed=3)
    b = corpus.write_corpus(tmp_path / "b", shards=1, docs_per_shard=5, seed=3)
    c = corpus.write_corpus(tmp_path / "c", shards=1, docs_per_shard=5, seed=4)
    assert a[0].read_bytes() == b[0].read_bytes() != c[0].read_bytes()
    assert len(a[0].read_text().splitlines()) == 5
    # an existing corpus is used as it is, not rewritten
    assert corpus.ensure_corpus(tmp_path / "b", shards=3, docs_per_shard=9, seed=0) == b


def test_byte_tokenizer_round_trips() -> None:
    tok = ByteTokenizer()
    assert tok.decode(tok.encode("naïve café")) == "naïve café"
    assert tok.decode([tok.bos_id, 104, 105, tok.eos_id, tok.pad_id]) == "hi"


@pytest.mark.skipif(not sentencepiece_available(), reason="sentencepiece is not installed")
def test_sentencepiece_is_trained_once_per_data_dir(tmp_path: Path) -> None:
    paths = corpus.write_corpus(tmp_path, shards=1, docs_per_shard=80, seed=0)
    tok = load_tokenizer("sentencepiece", tmp_path, 300, paths)
    assert tok.vocab_size <= 300 and (tmp_path / "tokenizer" / "spm-300.model").is_file()
    text = paths[0].read_text().splitlines()[0]
    assert tok.decode(tok.encode(text)) == text
    assert load_tokenizer("sentencepiece", tmp_path, 300, paths).encode(text) == tok.encode(text)


def test_fetch_timeout_raises_instead_of_hanging() -> None:
    fetcher = TimedFetcher(_slow(["a", "b"], delay=0.0), timeout=5)
    assert list(fetcher) == ["a", "b"] and fetcher.consumed == 2
    stalled = TimedFetcher(_slow(["a"], delay=2.0), timeout=0.05)
    with pytest.raises(DataFetchTimeout, match="--fetch-timeout 0.05 s"):
        next(stalled)
    stalled.close()


def test_document_sample_truncates_and_pads() -> None:
    tok = ByteTokenizer()
    short = document_sample("ab", tok, seq_len=6)
    assert short.inputs.tolist() == [[tok.bos_id, 97, 98, tok.eos_id, tok.pad_id, tok.pad_id]]
    assert short.targets.tolist() == [[97, 98, tok.eos_id, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert short.tokens == 3
    long = document_sample("abcdefghij", tok, seq_len=4)
    assert long.inputs.tolist() == [[tok.bos_id, 97, 98, 99]] and long.targets.tolist() == [[97, 98, 99, 100]]


def test_packer_carries_leftovers_and_rows_shift_by_one() -> None:
    tok = ByteTokenizer()
    packer = TokenPacker(iter(["abc", "de"]), tok)
    assert packer.take(2) == [97, 98] and packer.state_dict() == {"buffer": [99, tok.eos_id]}
    assert packer.take(4) == [99, tok.eos_id, 100, 101]
    batch = packed_rows(list(range(8)), seq_len=4)
    assert batch.inputs.tolist() == [[0, 1, 2], [4, 5, 6]] and batch.targets.tolist() == [[1, 2, 3], [5, 6, 7]]
    assert batch.tokens == 6
    with pytest.raises(ValueError, match="do not fill rows"):
        packed_rows([1, 2, 3], seq_len=2)


def test_moving_average_is_trailing() -> None:
    assert moving_average([1.0, 3.0, 5.0, 7.0], window=2) == [1.0, 2.0, 4.0, 6.0]


# -- whole trainers -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("side", ["sample", "chunked"])
def test_test_mode_writes_the_seed_artifacts(runs: dict[str, Path], side: str) -> None:
    viz = runs[side] / "training_viz"
    pngs = sorted(p.name for p in viz.glob("*.png"))
    charted = ("000005", "000010") if side == "sample" else ("000006",)
    assert pngs == ["training_latest.png", *(f"training_step_{n}.png" for n in charted)]
    assert all((viz / name).read_bytes()[:8] == PNG_MAGIC for name in pngs)
    history = json.loads((viz / "metrics_history.json").read_text())
    assert history["schema"] == METRICS_SCHEMA and history["window"] == 50
    steps = history["metrics"]
    assert [m["step"] for m in steps] == list(range(10 if side == "sample" else 6))
    assert all(m["loss"] > 0 and 0 <= m["accuracy"] <= 1 and m["tokens_per_second"] > 0 for m in steps)
    assert len(history["moving_averages"]["loss"]) == len(steps)
    samples = json.loads((viz / "text_samples.json").read_text())
    assert samples["schema"] == SAMPLES_SCHEMA and [s["step"] for s in samples["samples"]] == [0, 5]
    assert set(samples["samples"][0]) == {"step", "input", "target", "prediction"}
    saved = (5, 10) if side == "sample" else (5,)
    assert {p.name for p in (runs[side] / "checkpoints").iterdir()} == {
        f"checkpoint_step_{n}.bin{suffix}" for n in saved for suffix in ("", ".embeddings", ".decoder")}


@pytest.mark.slow
def test_chunk_sizes_and_tokens(runs: dict[str, Path]) -> None:
    # --test: 1024 tokens per chunk = 16 rows of 64, each predicting 63 targets; one padded document per sample step
    assert {m["tokens"] for m in _metrics(runs["chunked"])} == {16 * 63}
    assert all(m["tokens"] <= 64 for m in _metrics(runs["sample"]))


@pytest.mark.slow
def test_resume_continues_bit_for_bit(runs: dict[str, Path], shards: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    assert sample.main(["--test", "--device", "cpu", "--seed", "0", "--data-dir", str(shards), "--output-dir",
                        str(resumed), "--viz-interval", "100", "--resume",
                        str(runs["sample"] / "checkpoints" / "checkpoint_step_5.bin")]) == 0
    straight = {m["step"]: m["loss"] for m in _metrics(runs["sample"])}
    again = {m["step"]: m["loss"] for m in _metrics(resumed)}
    assert sorted(again) == [5, 6, 7, 8, 9]
    assert all(again[s] == straight[s] for s in again)  # same documents, weights, Adam state and schedule


@pytest.mark.slow
def test_incomplete_checkpoint_set_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    source = runs["chunked"] / "checkpoints"
    for name in ("checkpoint_step_5.bin", "checkpoint_step_5.bin.embeddings"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    model = torch.nn.Module()
    with pytest.raises(checkpoints.CheckpointError, match=r"missing checkpoint_step_5\.bin\.decoder"):
        checkpoints.load_checkpoint(tmp_path / "checkpoint_step_5.bin", model, None, None, torch.device("cpu"))  # type: ignore[arg-type]


def test_bad_chunk_size_is_a_usage_error(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        chunked.main(["--test", "--tokens-per-chunk", "100", "--data-dir", str(shards), "--output-dir", str(tmp_path)])
    assert exc.value.code == 2


def test_fetch_timeout_in_training_saves_and_stops(shards: Path, tmp_path: Path) -> None:
    config = TrainingConfig(total_steps=3, output_dir=tmp_path, data_dir=shards, preset="tiny", device="cpu")
    session = TrainingSession(config, say=lambda *_: None)

    def stalled() -> Batch:
        raise DataFetchTimeout("no document within --fetch-timeout 1 s")

    assert session.run_step(0, stalled, session.train_on_batch) is None
    session.finish()
    assert (tmp_path / "checkpoints" / "checkpoint_step_0.bin.decoder").is_file()


@pytest.mark.slow
def test_parity_records_both_trainers(shards: Path, tmp_path: Path) -> None:
    # In this process, as the tests above run them: the capture is the subject (the lm-sample-vs-chunked
    # pair's gate and resume check record both trainers through `parity record`).
    common = ["--test", "--device", "cpu", "--data-dir", str(shards), "--viz-interval", "100",
              "--checkpoint-interval", "100"]
    trainers = {"sample": (sample.main, [*common, "--steps", "3", "--output-dir", str(tmp_path / "sample")]),
                "chunked": (chunked.main, [*common, "--max-chunks", "3", "--output-dir", str(tmp_path / "chunked")])}
    for name, (main, argv) in trainers.items():
        with parity.record(tmp_path / f"run-{name}", seed=0):
            assert main(argv) == 0
        trace = load_run(tmp_path / f"run-{name}").primary
        assert trace.complete and len(trace.steps) == 3
