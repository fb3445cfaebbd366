"""Upstream config keys and defaults, the size presets, and the reference trainer's command-line parser.

The keys keep upstream's camelCase names so a pickled ``args`` file reads the same as
upstream's. Everything that upstream hard-codes lives here as a module constant.
Additions that upstream lacks (``device``, ``preset``, ``stepLog``) are marked and are
neutral by default.
"""
from __future__ import annotations

import argparse
import copy

import torch

#: Upstream defaults (train_model.py and config.yaml agree). ``seqLen`` and
#: ``maxTimeSeriesLen`` are upstream leftovers that nothing reads; kept so the pickled
#: args carry the same keys.
UPSTREAM_DEFAULTS: dict = {
    "outputDir": None,
    "datasetPath": None,
    "seqLen": 150,
    "maxTimeSeriesLen": 1200,
    "batchSize": 64,
    "lrStart": 0.02,
    "lrEnd": 0.02,
    "nUnits": 1024,
    "nBatch": 10000,
    "nLayers": 5,
    "seed": 0,
    "nClasses": 40,
    "nInputFeatures": 256,
    "dropout": 0.4,
    "whiteNoiseSD": 0.8,
    "constantOffsetSD": 0.2,
    "gaussianSmoothWidth": 2.0,
    "strideLen": 4,
    "kernelLen": 32,
    "bidirectional": True,
    "l2_decay": 1e-5,
}

# Constants upstream hard-codes (not config keys there, so not config keys here).
ADAM_BETAS = (0.9, 0.999)
#: Large on purpose: lineage of the TF original's Keras Adam epsilon.
ADAM_EPS = 0.1
EVAL_EVERY = 100
SMOOTH_KERNEL_SIZE = 20
CTC_BLANK = 0
#: nDays default of upstream's loadModel; only used when an args file lacks data.
LOAD_MODEL_DEFAULT_DAYS = 24

#: Size presets (addition). ``base`` is upstream exactly; ``tiny`` follows the fact
#: sheet's smallest sensible config so a 30-step CPU run takes seconds. The dataset
#: generator's presets of the same name produce matching data.
PRESETS: dict = {
    "base": {},
    "tiny": {
        "nInputFeatures": 16,
        "nClasses": 6,
        "nUnits": 32,
        "nLayers": 2,
        "kernelLen": 8,
        "strideLen": 4,
        "batchSize": 8,
        "nBatch": 201,
    },
}


def default_device() -> str:
    """Addition: upstream hard-codes "cuda"; we fall back to CPU when CUDA is absent."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_bool(text: str) -> bool:
    """argparse type for upstream's boolean keys, e.g. ``--bidirectional false``."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _key_type(value):
    # The default's type decides how a command-line string is converted; keys whose
    # default is None (paths) stay strings.
    if isinstance(value, bool):
        return parse_bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    return str


def add_config_options(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """Add one ``--key value`` option per config key; unset options stay None."""
    group = parser.add_argument_group("upstream config keys (override the preset)")
    for key, value in defaults.items():
        required = key in ("outputDir", "datasetPath")
        group.add_argument(
            f"--{key}",
            dest=key,
            type=_key_type(value),
            default=None,
            required=required,
            help=f"upstream default: {value!r}" if not required else "required",
        )


def add_addition_options(parser: argparse.ArgumentParser) -> None:
    """Options upstream lacks (additions). Each is neutral when left unset."""
    group = parser.add_argument_group("additions (not in upstream)")
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="base",
        help="size preset: base = upstream sizes (default), tiny = small CPU-friendly sizes",
    )
    group.add_argument(
        "--device",
        default=None,
        help=f"torch device; upstream hard-codes cuda. Default here: cuda if available "
        f"else cpu (this machine: {default_device()})",
    )
    group.add_argument(
        "--stepLog",
        default=None,
        help="write one JSON line per training step (step, loss, lr) to this file",
    )


def build_args(namespace: argparse.Namespace, defaults: dict, presets: dict = PRESETS) -> dict:
    """Merge defaults, then the size preset, then explicit command-line values."""
    args = copy.deepcopy(defaults)
    args.update(presets[namespace.preset])
    for key in defaults:
        value = getattr(namespace, key, None)
        if value is not None:
            args[key] = value
    args["device"] = namespace.device or default_device()
    args["preset"] = namespace.preset
    if namespace.stepLog:
        args["stepLog"] = namespace.stepLog
    return args


def make_args(preset: str = "base", **overrides) -> dict:
    """Programmatic equivalent of the command line (used by tests and the mod trainer)."""
    args = copy.deepcopy(UPSTREAM_DEFAULTS)
    args.update(PRESETS[preset])
    args["device"] = default_device()
    args["preset"] = preset
    unknown = set(overrides) - set(args) - {"stepLog"}
    if unknown:
        raise KeyError(f"unknown config keys: {sorted(unknown)}")
    args.update(overrides)
    return args
