"""Capture on Lightning (parity/capture/frameworks/lightning.py and the closure step in patches.py).

Fast tests cover `optimizer.step(closure)` in plain torch and the shim's helpers; the slow ones record
the Lightning test bed (tests/frameworks/lightning_module/) through its fw-lightning-* pair files,
cached where `pytest parity/` finds them, and check what the traces hold step by step.
"""

from __future__ import annotations

import enum
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import parity
from parity import session
from parity.capture.frameworks import lightning as shim
from parity.checks.compare import Comparison
from parity.pairs import load_pair
from parity.trace import schema
from parity.trace.reader import Trace, load_run

from conftest import record_pair_side

STEPS = 6  # the pair files' cpu steps: runs cached here serve `pytest parity/` too
CANDIDATES = ("accumulate", "clip-changed", "logging-checkpoints")


def _events(trace: Trace, step: int) -> list[str]:
    return trace.steps[step]["events"]


def _closure_run(tmp_path: Path, as_keyword: bool) -> tuple[Trace, list[float]]:
    """Three `optimizer.step(closure)` updates of a linear model; returns the trace and the gradient
    norm each update used, measured inside the closure after its backward."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    norms: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))))
        return loss

    with parity.record(tmp_path / "run"):
        for _ in range(3):
            optimizer.step(closure=closure) if as_keyword else optimizer.step(closure)
    return load_run(tmp_path / "run").primary, norms


# -- optimizer.step(closure) --------------------------------------------------------------------------
@pytest.mark.parametrize("as_keyword", [True, False])
def test_closure_update_is_recorded_after_the_closure(tmp_path, as_keyword):
    trace, norms = _closure_run(tmp_path, as_keyword)
    assert len(trace.steps) == 3
    assert _events(trace, 0) == [schema.EV_ZERO_GRAD, schema.EV_FORWARD, schema.EV_BACKWARD, schema.EV_OPT_STEP]
    for step, norm in zip(trace.steps, norms):
        assert step["grad_norm"]["source"] == "parity"
        assert step["grad_norm"]["value"] == pytest.approx(norm, rel=1e-6)  # not the previous update's gradients
        assert len(step["losses"]) == 1
    # The model's first forward ran inside the first update's closure: it is still described.
    model = trace.meta[schema.META_MODEL]
    assert [root["class"] for root in model["roots"]] == ["torch.nn.modules.linear.Linear"]


def test_optimizer_that_never_calls_its_closure_still_records_its_update(tmp_path):
    class Lazy(torch.optim.SGD):
        def step(self, closure=None):  # noqa: ANN001 -- torch's own signature
            return super().step()

    model = torch.nn.Linear(2, 1)
    optimizer = Lazy(model.parameters(), lr=0.1)
    with parity.record(tmp_path / "run"):
        for _ in range(2):
            optimizer.zero_grad()
            model(torch.ones(1, 2)).sum().backward()
            optimizer.step(lambda: None)
    trace = load_run(tmp_path / "run").primary
    assert len(trace.steps) == 2
    assert all(step["events"].count(schema.EV_OPT_STEP) == 1 for step in trace.steps)
    assert all(step["groups"] for step in trace.steps)


# -- helpers of the shim ------------------------------------------------------------------------------
def test_join_batches_concatenates_every_tensor_along_dim0():
    a = (torch.arange(6.0).reshape(2, 3), torch.tensor([0, 1]))
    b = (torch.arange(6.0, 12.0).reshape(2, 3), torch.tensor([2, 3]))
    joined = shim.join_batches([a, b])
    assert torch.equal(joined[0], torch.arange(12.0).reshape(4, 3)) and torch.equal(joined[1], torch.arange(4))
    d = shim.join_batches([{"x": a[0], "n": 3}, {"x": b[0], "n": 3}])
    assert d["n"] == 3 and d["x"].shape == (4, 3)
    assert shim.join_batches([a]) is a  # one micro-batch: no copy


@pytest.mark.parametrize("batches", [
    [(torch.zeros(2, 3),), (torch.zeros(2, 4),)],  # other trailing shape
    [(torch.zeros(2, 3),), (torch.zeros(2, 3, dtype=torch.float64),)],  # other dtype
    [(torch.zeros(2),), (torch.zeros(2), torch.zeros(2))],  # other structure
    [(torch.tensor(1.0),), (torch.tensor(2.0),)],  # 0-d tensors have no rows
    [{"x": torch.zeros(2), "id": "a"}, {"x": torch.zeros(2), "id": "b"}],  # non-tensor leaves that differ
], ids=["shape", "dtype", "structure", "scalar", "strings"])
def test_join_batches_refuses_what_does_not_join(batches):
    assert shim.join_batches(batches) is None


def test_trainer_settings_resolve_flags_and_describe_objects():
    class Algorithm(str, enum.Enum):
        NORM = "norm"

    class Callback:
        state_key = "ModelCheckpoint{'every_n_train_steps': 4}"

    class Trainer:
        gradient_clip_algorithm = Algorithm.NORM
        callbacks = [Callback()]

        @property
        def lightning_module(self):  # raises before fit(), as Lightning's does
            raise RuntimeError("no module attached")

    given = {"gradient_clip_algorithm": None, "callbacks": None, "lightning_module": "given", "max_steps": 6,
             "strategy": object()}
    settings = shim.trainer_settings(Trainer(), given)
    assert settings == {"gradient_clip_algorithm": "norm", "callbacks": ["ModelCheckpoint{'every_n_train_steps': 4}"],
                        "lightning_module": "given", "max_steps": 6, "strategy": "<builtins.object>"}


# -- the Lightning test bed, recorded -----------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The shared baseline ("base") and each candidate of CANDIDATES."""
    root = tmp_path_factory.mktemp("lightning")
    pairs = {name: load_pair(f"fw-lightning-{name}") for name in CANDIDATES}
    base = record_pair_side(pairs[CANDIDATES[0]].baseline, root / "base", STEPS)
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores; each side runs with OMP_NUM_THREADS=1
        futures = {name: pool.submit(record_pair_side, pair.candidate, root / name, STEPS)
                   for name, pair in pairs.items()}
        return {"base": base} | {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def traces(runs) -> dict[str, Trace]:
    return {name: load_run(path).primary for name, path in runs.items()}


@pytest.fixture(scope="module")
def comparisons(runs) -> dict[str, Comparison]:
    return {name: session.compare(runs["base"], runs[name], ignore_args=load_pair(f"fw-lightning-{name}").ignore_args)
            for name in CANDIDATES}


@pytest.mark.slow
def test_pairs_share_one_baseline():
    sides = {tuple(load_pair(f"fw-lightning-{name}").baseline.command) for name in CANDIDATES}
    assert len(sides) == 1


@pytest.mark.slow
def test_one_step_per_optimizer_update(traces):
    base = traces["base"]
    assert len(base.steps) == STEPS  # max_steps counts updates; accumulation adds no step
    for i in range(STEPS):
        events = _events(base, i)
        assert events.count(schema.EV_OPT_STEP) == 1 and events.count(schema.EV_BACKWARD) == 2
        # Both micro-batches' backward and the clip come before the update, the scheduler after it.
        assert events.index(schema.EV_OPT_STEP) > max(j for j, e in enumerate(events) if e == schema.EV_BACKWARD)
        assert events.index(schema.EV_CLIP) < events.index(schema.EV_OPT_STEP) < events.index(schema.EV_SCHED_STEP)
        assert len(base.steps[i]["losses"]) == 2
        assert base.steps[i]["mode"]["training"] is True and base.steps[i]["mode"]["root"] == "BlobClassifier"
    assert len(traces["accumulate"].steps) == STEPS


@pytest.mark.slow
def test_losses_are_what_backward_ran_on(traces):
    """Lightning divides each micro-batch's loss by accumulate_grad_batches: two halves of the 2x16 run
    add up to the 1x32 run's loss at step 0 (the same model, the same 32 rows), but not bit for bit."""
    halves = [loss["value"] for loss in traces["base"].steps[0]["losses"]]
    [whole] = [loss["value"] for loss in traces["accumulate"].steps[0]["losses"]]
    assert sum(halves) == pytest.approx(whole, rel=1e-6)
    assert all(h < whole * 0.75 for h in halves)


@pytest.mark.slow
def test_pre_clip_norm_and_threshold(traces):
    base, clipped = traces["base"].steps[0], traces["clip-changed"].steps[0]
    assert base["clip"] == {"max_norm": 1.0, "norm_type": 2.0} and clipped["clip"]["max_norm"] == 0.25
    assert base["grad_norm"]["source"] == "clip_grad_norm_"
    assert base["grad_norm"]["value"] > 1.0  # clipped to 1.0 afterwards: this is the norm before the clip
    assert clipped["grad_norm"]["bits"] == base["grad_norm"]["bits"]  # the same gradients at step 0
    assert traces["clip-changed"].steps[1]["grad_norm"]["bits"] != traces["base"].steps[1]["grad_norm"]["bits"]


@pytest.mark.slow
def test_lr_is_the_one_each_update_used(traces):
    lrs = [step["groups"][0]["lr"] for step in traces["base"].steps]
    assert lrs == pytest.approx([0.05 / 3, 0.05 * 2 / 3, 0.05, 0.05, 0.05, 0.05])  # LambdaLR warmup, interval "step"


@pytest.mark.slow
def test_lightning_config_is_captured(traces):
    configs = traces["base"].meta[schema.META_CONFIG_OBJECTS]
    assert configs[shim.CONFIG_MODULE] == {"num_features": 16, "num_classes": 4, "hidden": 32, "dropout": 0.1,
                                           "lr": 0.05, "weight_decay": 0.01, "warmup_steps": 3}
    assert configs[shim.CONFIG_DATAMODULE]["batch_size"] == 16
    trainer = configs[shim.CONFIG_TRAINER]
    assert (trainer["accumulate_grad_batches"], trainer["gradient_clip_val"], trainer["max_steps"]) == (2, 1.0, STEPS)
    assert (trainer["precision"], trainer["deterministic"], trainer["max_epochs"]) == ("32-true", True, -1)


@pytest.mark.slow
def test_trainer_flag_change_shows_in_config_and_clip(comparisons):
    c = comparisons["clip-changed"]
    changes = [change["path"] for change in c.finding("config").evidence["changes"]]
    assert changes == [f"root['config_objects']['{shim.CONFIG_TRAINER}']['gradient_clip_val']"]
    assert c.verdict == schema.DIFFERENT
    assert (c.first_divergence["step"], c.first_divergence["channel"]) == (0, "grad_norm")
    assert c.finding("data").status == schema.IDENTICAL and c.finding("lr_schedule").status == schema.IDENTICAL


@pytest.mark.slow
def test_accumulated_and_whole_batches_are_the_same_data(traces, comparisons):
    c = comparisons["accumulate"]
    data = c.finding("data")
    assert data.status == schema.IDENTICAL
    assert not data.evidence.get("rebatched"), "joined micro-batches must match bit for bit, not only as samples"
    for a, b in zip(traces["base"].steps, traces["accumulate"].steps):
        assert (len(a["loader"]), len(a["batch"])) == (1, 1)
        assert (a["loader"], a["batch"], a["samples"], a["labels"]) == (b["loader"], b["batch"], b["samples"], b["labels"])
    assert c.finding("loss").status == schema.DIFFERENT and c.finding("loss").first_divergent_step == 0
    assert c.finding("lr_schedule").status == schema.IDENTICAL
    assert (c.first_divergence["step"], c.first_divergence["channel"]) == (0, "loss")


@pytest.mark.slow
def test_logging_and_checkpoint_frequency_are_identical(comparisons):
    c = comparisons["logging-checkpoints"]
    assert c.verdict == schema.IDENTICAL and c.first_divergence is None
    assert c.finding("step_order").status == schema.EQUIVALENT  # extra checkpoint saves only


@pytest.mark.slow
@pytest.mark.parametrize("name", CANDIDATES)
def test_pair_file_expectations_hold(name, comparisons):
    failures = session.gate_failures(load_pair(f"fw-lightning-{name}"), comparisons[name])
    assert not failures, [(f.check, f.expected, f.actual, f.step, f.summary) for f in failures]


@pytest.mark.slow
def test_prefetched_batch_is_not_taken_for_the_trained_one(tmp_path):
    """An iterable dataset has no length, so Lightning's fetcher reads one batch ahead: the step's
    loader digest must be that of the batch handed to training_step, not of the last fetch."""
    import lightning as L
    from torch.utils.data import DataLoader, IterableDataset

    from parity.capture import digest

    class Stream(IterableDataset):
        def __iter__(self):
            generator = torch.Generator().manual_seed(3)
            for _ in range(64):
                yield torch.randn(4, generator=generator), torch.randint(0, 2, (), generator=generator)

    class Model(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.seen: list[str] = []

        def training_step(self, batch, batch_idx):
            self.seen.append(digest.digest_tensors(list(batch), weighted=True))
            return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Model()
    with parity.record(tmp_path / "run"):
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        trainer.fit(model, DataLoader(Stream(), batch_size=8))
    trace = load_run(tmp_path / "run").primary
    assert [step["loader"] for step in trace.steps] == [[seen] for seen in model.seen]
    assert trace.meta[schema.META_CONFIG_OBJECTS][shim.CONFIG_TRAINER]["max_steps"] == 3
