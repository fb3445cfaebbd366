"""Model structure meta, per-step training mode, and the root of a trainer calling `model.forward()`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import parity
from parity.trace import schema
from parity.trace.reader import load_run

from conftest import record_toy_in_process


class Recurrent(nn.Module):
    """A model whose forward feeds its cell a constant zero hidden state: the submodule's inputs are not the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.cell = nn.GRUCell(6, 6)
        self.head = nn.Linear(6, 2)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.zeros(x.shape[0], 6)
        return self.head(self.dropout(self.cell(self.embed(x), hidden)))


def _train(tmp_path, name: str, *, direct: bool = False, eval_mode: bool = False, freeze: bool = False,
           steps: int = 3):
    torch.manual_seed(0)
    model = Recurrent()
    if freeze:
        model.embed.requires_grad_(False)
    extra = nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad] + [extra], lr=0.1)
    g = torch.Generator().manual_seed(1)
    with parity.record(tmp_path / name):
        if eval_mode:
            model.eval()
        for _ in range(steps):
            opt.zero_grad()
            x, y = torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)
            logits = model.forward(x) if direct else model(x)
            (nn.functional.cross_entropy(logits, y) + extra.sum()).backward()
            opt.step()
    return load_run(tmp_path / name).primary


def test_model_meta_describes_the_root_and_optimizer_only_params(tmp_path):
    trace = _train(tmp_path, "run", freeze=True)
    model = trace.meta[schema.META_MODEL]
    (root,) = model["roots"]
    assert root["class"] == f"{__name__}.Recurrent"
    rows = [m[:2] for m in root["modules"]]
    assert ["cell", "GRUCell"] in rows and ["", "Recurrent"] in rows
    # Module settings (what extra_repr prints) are recorded: a dropout rate is not a parameter.
    assert ["dropout", "Dropout", "p=0.5, inplace=False"] in root["modules"]
    params = {name: rest for name, *rest in root["params"]}
    assert params["head.weight"] == [[2, 6], "float32", True]
    assert params["embed.weight"] == [[6, 4], "float32", False]
    assert root["n_params"] == sum(p.numel() for p in Recurrent().parameters())
    assert root["n_trainable"] == root["n_params"] - 6 * 4 - 6
    assert model["optimizer_only"] == [[[3], "float32", True]]


def test_model_meta_without_forward_lists_optimizer_params(tmp_path):
    weight = nn.Parameter(torch.ones(2, 2))
    opt = torch.optim.SGD([weight], lr=0.1)
    with parity.record(tmp_path / "run"):
        weight.sum().backward()
        opt.step()
    model = load_run(tmp_path / "run").primary.meta[schema.META_MODEL]
    assert model == {"roots": [], "optimizer_only": [[[2, 2], "float32", True]]}


def test_mode_records_training_and_eval_modules(tmp_path):
    train = _train(tmp_path, "train")
    evaluated = _train(tmp_path, "eval", eval_mode=True)
    assert [s[schema.F_MODE] for s in train.steps] == [
        {"root": "Recurrent", "training": True, "eval_modules": [], "n_eval": 0}] * 3
    mode = evaluated.steps[0][schema.F_MODE]
    assert mode["training"] is False and mode["n_eval"] == 4
    assert mode["eval_modules"] == ["embed", "cell", "head", "dropout"]


def test_direct_forward_records_the_model_inputs_once_per_call(tmp_path):
    called = _train(tmp_path, "call")
    direct = _train(tmp_path, "direct", direct=True)
    assert [s["batch"] for s in direct.steps] == [s["batch"] for s in called.steps]
    assert all(len(s["batch"]) == 1 and s["batch"][0].startswith("Recurrent:") for s in direct.steps)
    assert [s["events"] for s in direct.steps] == [s["events"] for s in called.steps]
    assert direct.meta[schema.META_MODEL]["roots"][0]["class"].endswith(".Recurrent")
    assert direct.steps[0][schema.F_MODE]["root"] == "Recurrent"
    assert [s["losses"] for s in direct.steps] == [s["losses"] for s in called.steps]


@pytest.mark.slow
def test_toy_eval_left_on_records_eval_mode_and_eval_pass_does_not(tmp_path):
    # Recorded in this process: what the capture takes from the trainer is the subject, not the launcher.
    scripts = {"base": "train.py", "eval_pass": "variants/eval_pass.py", "eval_on": "variants/eval_during_training.py"}
    for name, script in scripts.items():
        record_toy_in_process(tmp_path / name, script, "--steps", "3", "--data-size", "128")
    modes = {name: [s[schema.F_MODE] for s in load_run(tmp_path / name).primary.steps] for name in scripts}
    assert modes["base"] == [{"root": "Sequential", "training": True, "eval_modules": [], "n_eval": 0}] * 3
    # eval_pass runs an eval pass after step 0 and restores train() before the next grad forward.
    assert modes["eval_pass"] == modes["base"]
    assert all(m["training"] is False and m["n_eval"] == 6 for m in modes["eval_on"])
    assert modes["eval_on"][0]["eval_modules"] == ["0", "1", "2", "3", "4", "5"]


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_recompute_is_not_a_second_root(tmp_path, reentrant):
    """A block recomputed during backward (gradient checkpointing) runs its forward inside the autograd
    engine: the model, its events and its batch stay those of the plain run."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self, use: bool) -> None:
            super().__init__()
            self.use, self.embed, self.head = use, nn.Linear(4, 6), nn.Linear(6, 2)
            self.block = nn.Sequential(nn.Linear(6, 6), nn.Tanh())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden = self.embed(x)  # the checkpointed block's input requires grad (reentrant checkpoints need it)
            hidden = checkpoint(self.block, hidden, use_reentrant=reentrant) if self.use else self.block(hidden)
            return self.head(hidden)

    traces = {}
    for use in (False, True):
        torch.manual_seed(0)
        model = Checkpointed(use)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 4, requires_grad=False)
        with parity.record(tmp_path / str(use)):
            for _ in range(2):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
        traces[use] = load_run(tmp_path / str(use)).primary
    plain, checkpointed = traces[False], traces[True]
    [root] = checkpointed.meta[schema.META_MODEL][schema.MODEL_ROOTS]
    assert root[schema.ROOT_CLASS].endswith("Checkpointed")
    for a, b in zip(plain.steps, checkpointed.steps):
        assert a[schema.F_EVENTS] == b[schema.F_EVENTS] and a[schema.F_BATCH] == b[schema.F_BATCH]
        assert a[schema.F_PARAMS] == b[schema.F_PARAMS]
