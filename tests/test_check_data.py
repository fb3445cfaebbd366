"""`data` check: order-sensitive batch digests per step."""

from __future__ import annotations

from pathlib import Path

import torch

from parity.capture.digest import digest_tensors
from parity.checks.data import check_data
from parity.trace import schema
from parity.trace.reader import Trace


def _batch(seed: int, order: list[int] | None = None) -> str:
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(4)
    if order is not None:
        x, y = x[order], y[order]
    return digest_tensors([x, y], weighted=True)


def _trace(*batches: list[str] | None) -> Trace:
    """One step per argument: the digests of the batches that step's forward saw."""
    steps = [{"type": schema.STEP, "step": i, "events": [], "batch": b} for i, b in enumerate(batches)]
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0}
    return Trace(path=Path("t.jsonl"), header=header, steps=steps)


BATCHES = [[_batch(i)] for i in range(5)]


def test_identical() -> None:
    f = check_data(_trace(*BATCHES), _trace(*BATCHES))
    assert f.status == schema.IDENTICAL and f.first_divergent_step is None
    assert f.evidence["steps_compared"] == 5 and "exact bits" in f.evidence["strength"]


def test_planted_different_batch() -> None:
    cand = BATCHES[:3] + [[_batch(99)], [_batch(4)]]
    f = check_data(_trace(*BATCHES), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 3
    assert f.evidence["batch"]["baseline_digest"] == BATCHES[3] and f.evidence["batch"]["candidate_digest"] == [_batch(99)]


def test_shuffled_samples_within_a_batch_are_caught() -> None:
    cand = [BATCHES[0], [_batch(1, order=[1, 0, 2, 3])]] + BATCHES[2:]
    f = check_data(_trace(*BATCHES), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 1


def test_microbatch_order_is_caught() -> None:
    two = [_batch(10), _batch(11)]
    f = check_data(_trace(two), _trace(list(reversed(two))))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0


def test_not_compared_without_digests() -> None:
    f = check_data(_trace([], [], []), _trace(None, None, None))
    assert f.status == schema.NOT_COMPARED and f.affects_training is False


def test_steps_without_digests_on_one_side_are_skipped() -> None:
    # Level every:2 on the candidate: odd steps carry no digest and are not compared.
    cand = [b if i % 2 == 0 else [] for i, b in enumerate(BATCHES)]
    f = check_data(_trace(*BATCHES), _trace(*cand))
    assert f.status == schema.IDENTICAL and f.evidence["steps_compared"] == 3


def test_loader_batches_equal_but_model_inputs_differ_is_augmentation() -> None:
    base, cand = _trace(*BATCHES), _trace(*BATCHES[:2], [_batch(7)], *BATCHES[3:])
    for trace in (base, cand):
        for step in trace.steps:
            step["loader"] = ["same-loader-digest"]
    f = check_data(base, cand)
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    assert "augmentation or noise" in f.summary and f.evidence["loader_steps_compared"] == 5


def test_loader_batches_differ_first() -> None:
    base, cand = _trace(*BATCHES), _trace(*BATCHES)
    for i, (a, b) in enumerate(zip(base.steps, cand.steps)):
        a["loader"], b["loader"] = [f"l{i}"], [f"l{i}" if i < 1 else f"other{i}"]
    f = check_data(base, cand)
    assert f.first_divergent_step == 1 and "DataLoader's batches differ" in f.summary


def test_without_dataloader_batches_no_augmentation_is_claimed() -> None:
    """A loop that feeds the model itself: differing inputs are not blamed on augmentation."""
    cand = BATCHES[:2] + [[_batch(99)]] + BATCHES[3:]
    f = check_data(_trace(*BATCHES), _trace(*cand))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 2
    assert f.evidence["kind"] == "data_content" and "no DataLoader" in f.evidence["how"]
    assert "augmentation" not in f.summary


def _loader(sampler: str, batch_size: int) -> dict:
    """A META_DATALOADERS entry over one unchanged dataset."""
    return {"class": "torch.utils.data.dataloader.DataLoader", "sampler": sampler, "batch_size": batch_size,
            "shuffle": False, "drop_last": False, "batch_sampler": "torch.utils.data.sampler.BatchSampler",
            "dataset": {"class": "Rows", "len": 400, "attrs": {"rows": "abc"}}}


def test_a_sharding_sampler_is_named_not_augmentation() -> None:
    """The DDP fork: the same dataset drawn by a DistributedSampler at half the batch size. The batches
    differ because of sampling, which the loader descriptions show; augmentation is not blamed."""
    base, cand = _trace(*BATCHES), _trace(*([_batch(50 + i)] for i in range(5)))
    base.meta[schema.META_DATALOADERS] = [_loader("torch.utils.data.sampler.SequentialSampler", 16)]
    cand.meta[schema.META_DATALOADERS] = [_loader("torch.utils.data.distributed.DistributedSampler", 8)]
    for i, (a, b) in enumerate(zip(base.steps, cand.steps)):
        a["loader"], b["loader"] = [f"l{i}"], [f"other{i}"]
    f = check_data(base, cand)
    assert f.status == schema.DIFFERENT and f.evidence["kind"] == "data_order"
    assert "sampler SequentialSampler -> DistributedSampler" in f.evidence["how"]
    assert "batch_size 16 -> 8" in f.evidence["how"] and "augmentation" not in f.summary
