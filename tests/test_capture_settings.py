"""Config objects found without edits: module globals, the frames leading to the update, `self` attributes."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
from pathlib import Path

import torch

import parity
from parity.capture import settings
from parity.trace import schema
from parity.trace.reader import load_run

#: A module-level config dict, found under this module's name.
TRAIN_CONFIG = {"lr": 0.1, "layers": [4, 2], "out": "runs/x"}
_private_cache = {"not": "config"}


@dataclasses.dataclass
class ModelConfig:
    width: int = 4
    path: Path = Path("data")


@dataclasses.dataclass
class Batch:
    inputs: torch.Tensor


class Loop:
    def __init__(self, opt: torch.optim.Optimizer) -> None:
        self.opt = opt
        self.hparams = argparse.Namespace(epochs=2, name="toy")

    def step(self) -> None:
        self.opt.step()


def _train_with_configs(cfg: dict) -> None:
    model_cfg = ModelConfig()
    extra = types.SimpleNamespace(beta=0.5)
    batch = Batch(torch.zeros(2))  # holds a tensor: data, not configuration
    weights = {"w": torch.ones(1)}  # named like nothing config-ish, holding a tensor
    weight = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([weight], lr=cfg["lr"])
    (weight * model_cfg.width * extra.beta + batch.inputs).sum().backward()
    assert weights
    Loop(opt).step()


def test_record_finds_config_in_globals_locals_and_self(tmp_path):
    with parity.record(tmp_path / "run"):
        _train_with_configs(TRAIN_CONFIG)
    found = load_run(tmp_path / "run").primary.meta[schema.META_CONFIG_OBJECTS]
    assert found[f"{__name__}.TRAIN_CONFIG"] == TRAIN_CONFIG
    # The same dict handed on as `cfg` is listed once, under the name it was found first.
    assert not any(key.endswith(":cfg") for key in found)
    assert found["_train_with_configs:model_cfg"] == {"width": 4, "path": "data"}
    assert found["_train_with_configs:extra"] == {"beta": 0.5}
    assert found["Loop.step:self.hparams"] == {"epochs": 2, "name": "toy"}
    assert not any("batch" in key or "weights" in key or "_private_cache" in key for key in found)


def test_config_value_refuses_data_and_oversized_objects():
    assert settings.config_value("cfg", {"a": float("nan")}) == {"a": "nan"}
    assert settings.config_value("cfg", {1: "non-string key"}) is None
    assert settings.config_value("lookup", {"a": 1}) is None
    assert settings.config_value("CFG", {"x": list(range(settings.MAX_LEAVES + 1))}) is None
    assert settings.config_value("state", Batch(torch.zeros(1))) is None
    assert settings.config_value("cls", ModelConfig) is None


def test_omegaconf_and_training_arguments_are_duck_typed(monkeypatch):
    class DictConfig:  # like omegaconf's: a mapping, but not a dict
        def __init__(self, **values):
            self.values = values

    class OmegaConf:
        @staticmethod
        def to_container(value, resolve):
            assert resolve
            return dict(value.values)

    monkeypatch.setitem(sys.modules, "omegaconf", types.SimpleNamespace(DictConfig=DictConfig, OmegaConf=OmegaConf))
    assert settings.config_value("anything", DictConfig(lr=1)) == {"lr": 1}

    class TrainingArguments:
        def to_dict(self):
            return {"output_dir": "out", "learning_rate": 5e-5}

    assert settings.config_value("training_args", TrainingArguments()) == {"output_dir": "out", "learning_rate": 5e-5}
