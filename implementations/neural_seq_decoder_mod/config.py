"""Config of the modified decoder: upstream keys plus one key per change, run presets, and the CLI parser.

Every added key defaults to upstream behaviour, so an empty command line trains
exactly like the reference. Precedence: upstream defaults < size preset (tiny|base) <
run preset (run6..run11) < explicit command-line values.
"""
from __future__ import annotations

import argparse
import copy

from reference.neural_seq_decoder.config import (
    PRESETS,
    UPSTREAM_DEFAULTS,
    add_config_options,
    default_device,
    parse_bool,
)

#: Added keys with their upstream-equivalent values (the baseline of every toggle).
MOD_DEFAULTS: dict = {
    "optimizer": "adam",  # adam = coupled L2 via l2_decay; adamw = decoupled decay
    "lr_schedule": "linear",  # linear = upstream LinearLR(lrStart -> lrEnd)
    "warmup_steps": 0,
    "warmup_start_lr": 0.0,
    "plateau_factor": 0.5,
    "plateau_patience": 8,
    "plateau_min_lr": 1e-5,
    "clip_grad": 0.0,  # max global grad norm; 0 = no clipping
    "amp": "off",  # off | auto | bf16 | fp16 (fp16 adds a GradScaler)
    "time_mask_prob": 0.0,
    "time_mask_width": 15,
    "time_mask_max": 1,
    "freq_mask_prob": 0.0,
    "freq_mask_width": 12,
    "freq_mask_max": 1,
    "layer_norm": False,
    "input_dropout": 0.0,
    "t_eff": "upstream",  # upstream | floor | windows
    "nan_skip": False,
    "nan_lr_backoff": 1.0,  # lr multiplier after a skipped step; 1.0 = off
    "decoder": "greedy",  # greedy | beam
    "beam_size": 20,
    "cudnn_benchmark": False,
    "compile": False,
    "compile_backend": "inductor",
    "num_workers": 0,
    "pin_memory": "auto",  # auto = pin when CUDA is present (what upstream's True does)
    "persistent_workers": False,
    "non_blocking": False,
    "resume": None,  # path of a checkpoint.pt to continue from
    "stop_after": None,  # stop (with a checkpoint) after this many steps; for resume tests
}

#: (flag, key, type, choices, help) for every added key.
MOD_FLAGS = [
    ("--optimizer", "optimizer", str, ("adam", "adamw"), "adam (upstream, coupled L2) or adamw"),
    ("--lr-schedule", "lr_schedule", str, ("linear", "constant", "warmup_cosine", "plateau"), "learning-rate schedule"),
    ("--warmup-steps", "warmup_steps", int, None, "warmup_cosine: linear warmup steps"),
    ("--warmup-start-lr", "warmup_start_lr", float, None, "warmup_cosine: lr at step 0"),
    ("--plateau-factor", "plateau_factor", float, None, "plateau: lr factor on a plateau"),
    ("--plateau-patience", "plateau_patience", int, None, "plateau: evaluations without PER gain"),
    ("--plateau-min-lr", "plateau_min_lr", float, None, "plateau: lower lr bound"),
    ("--clip-grad", "clip_grad", float, None, "max global grad norm (0 = off)"),
    ("--amp", "amp", str, ("off", "auto", "bf16", "fp16"), "autocast dtype (fp16 uses a GradScaler)"),
    ("--time-mask-prob", "time_mask_prob", float, None, "per-trial probability of time masking"),
    ("--time-mask-width", "time_mask_width", int, None, "max bins per time mask"),
    ("--time-mask-max", "time_mask_max", int, None, "max time masks per trial"),
    ("--freq-mask-prob", "freq_mask_prob", float, None, "per-trial probability of channel masking"),
    ("--freq-mask-width", "freq_mask_width", int, None, "max channels per frequency mask"),
    ("--freq-mask-max", "freq_mask_max", int, None, "max frequency masks per trial"),
    ("--layer-norm", "layer_norm", parse_bool, None, "LayerNorm on the GRU input windows (on/off)"),
    ("--input-dropout", "input_dropout", float, None, "dropout on the GRU input windows"),
    ("--t-eff", "t_eff", str, ("upstream", "floor", "windows"), "CTC input lengths formula"),
    ("--nan-skip", "nan_skip", parse_bool, None, "skip updates whose grad norm is NaN/Inf (on/off)"),
    ("--nan-lr-backoff", "nan_lr_backoff", float, None, "multiply lr by this after a skipped update (1 = off)"),
    ("--decoder", "decoder", str, ("greedy", "beam"), "evaluation decoder"),
    ("--beam-size", "beam_size", int, None, "prefix beam search width"),
    ("--cudnn-benchmark", "cudnn_benchmark", parse_bool, None, "torch.backends.cudnn.benchmark (on/off)"),
    ("--compile", "compile", parse_bool, None, "torch.compile the model (on/off)"),
    ("--compile-backend", "compile_backend", str, None, "torch.compile backend"),
    ("--num-workers", "num_workers", int, None, "DataLoader workers"),
    ("--pin-memory", "pin_memory", str, ("auto", "on", "off"), "DataLoader pin_memory"),
    ("--persistent-workers", "persistent_workers", parse_bool, None, "keep DataLoader workers alive (on/off)"),
    ("--non-blocking", "non_blocking", parse_bool, None, "non_blocking host-to-device copies (on/off)"),
    ("--resume", "resume", str, None, "continue from this checkpoint.pt"),
    ("--stop-after", "stop_after", int, None, "stop after this many steps, writing a checkpoint"),
]

#: Friendlier spellings of upstream keys: flag -> list of keys it sets.
ALIASES = {
    "--lr": ("lr", ["lrStart", "lrEnd"]),
    "--weight-decay": ("weight_decay", ["l2_decay"]),
    "--white-noise": ("white_noise", ["whiteNoiseSD"]),
    "--constant-offset": ("constant_offset", ["constantOffsetSD"]),
}

_LOADER_SPEEDUPS = {"num_workers": 4, "persistent_workers": True, "pin_memory": "on", "non_blocking": True}

_RUN8 = {
    "optimizer": "adam", "l2_decay": 0.0, "clip_grad": 5.0, "amp": "off", "dropout": 0.4,
    "whiteNoiseSD": 0.0, "constantOffsetSD": 0.0, "time_mask_prob": 0.0,
    "lrStart": 1e-3, "lrEnd": 1e-3, "lr_schedule": "constant",
    # Kept from run 6 per the changelog ("LayerNorm: Enabled"); the changelog does not
    # say input dropout was dropped, so it stays with the LayerNorm.
    "layer_norm": True, "input_dropout": 0.1, "nan_skip": True, **_LOADER_SPEEDUPS,
}
_RUN9 = {**_RUN8, "clip_grad": 0.5, "t_eff": "floor"}
_RUN10 = {**_RUN9, "cudnn_benchmark": True, "compile": True}

#: The seed changelog's runs as config overrides (see toggles.py for the per-change view).
RUN_PRESETS: dict = {
    "run6": {
        "lrStart": 1.5e-3, "lrEnd": 1.5e-3, "lr_schedule": "constant", "optimizer": "adamw",
        "l2_decay": 1e-4, "clip_grad": 1.0, "amp": "auto", "whiteNoiseSD": 0.2, "dropout": 0.3,
        "time_mask_prob": 0.10, "time_mask_width": 15, "time_mask_max": 2,
        "layer_norm": True, "input_dropout": 0.1, "nan_skip": True, **_LOADER_SPEEDUPS,
    },
    "run8": _RUN8,
    "run9": _RUN9,
    "run10": _RUN10,
    "run11": {
        **_RUN10, "decoder": "beam", "beam_size": 20, "optimizer": "adamw", "l2_decay": 1e-4,
        "lr_schedule": "plateau", "plateau_patience": 8, "plateau_factor": 0.5, "plateau_min_lr": 1e-5,
        "time_mask_prob": 0.10, "time_mask_width": 40, "time_mask_max": 2,
        "freq_mask_prob": 0.10, "freq_mask_width": 12, "freq_mask_max": 2,
        "lrStart": 8e-4, "lrEnd": 8e-4, "clip_grad": 1.5,
    },
}

ALL_DEFAULTS = {**UPSTREAM_DEFAULTS, **MOD_DEFAULTS}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m implementations.neural_seq_decoder_mod.train",
        description="Modified GRU+CTC decoder trainer; every change is a flag whose default is upstream's behaviour.",
    )
    add_config_options(parser, UPSTREAM_DEFAULTS)
    group = parser.add_argument_group("modifications (defaults = upstream behaviour)")
    for flag, key, kind, choices, text in MOD_FLAGS:
        group.add_argument(flag, dest=key, type=kind, choices=choices, default=None,
                           help=f"{text} [upstream: {MOD_DEFAULTS[key]!r}]")
    for flag, (dest, keys) in ALIASES.items():
        group.add_argument(flag, dest=dest, type=float, default=None, help=f"sets {', '.join(keys)}")
    presets = parser.add_argument_group("presets")
    presets.add_argument("--preset", choices=sorted(PRESETS), default="base", help="size preset (tiny|base)")
    presets.add_argument("--preset-run", choices=sorted(RUN_PRESETS), default=None, help="a seed changelog run's settings")
    presets.add_argument("--device", default=None, help=f"torch device; default cuda if available else cpu (here: {default_device()})")
    return parser


def build_args(namespace: argparse.Namespace) -> dict:
    """Apply the precedence chain to a parsed namespace."""
    args = copy.deepcopy(ALL_DEFAULTS)
    args.update(PRESETS[namespace.preset])
    if namespace.preset_run:
        args.update(RUN_PRESETS[namespace.preset_run])
    for _flag, (dest, keys) in ALIASES.items():
        value = getattr(namespace, dest, None)
        if value is not None:
            args.update({key: value for key in keys})
    for key in ALL_DEFAULTS:
        value = getattr(namespace, key, None)
        if value is not None:
            args[key] = value
    args["device"] = namespace.device or default_device()
    args["preset"] = namespace.preset
    args["preset_run"] = namespace.preset_run
    validate_args(args)
    return args


def make_mod_args(preset: str = "base", preset_run: str | None = None, **overrides) -> dict:
    """Programmatic equivalent of the command line."""
    args = copy.deepcopy(ALL_DEFAULTS)
    args.update(PRESETS[preset])
    if preset_run:
        args.update(RUN_PRESETS[preset_run])
    unknown = set(overrides) - set(ALL_DEFAULTS) - {"device"}
    if unknown:
        raise KeyError(f"unknown config keys: {sorted(unknown)}")
    args.update(overrides)
    args.setdefault("device", default_device())
    args["preset"], args["preset_run"] = preset, preset_run
    validate_args(args)
    return args


def validate_args(args: dict) -> None:
    """Reject settings PyTorch would reject later, naming the flag to change."""
    if args["lr_schedule"] == "linear" and not 0 <= args["lrEnd"] / args["lrStart"] <= 1:
        raise ValueError("--lr-schedule linear needs 0 <= lrEnd <= lrStart (LinearLR end_factor in [0, 1])")
    if args["gaussianSmoothWidth"] <= 0:
        raise ValueError("--gaussianSmoothWidth must be > 0 (0 gives a NaN kernel)")
    if args["persistent_workers"] and args["num_workers"] == 0:
        raise ValueError("--persistent-workers on needs --num-workers > 0")
    if args["beam_size"] < 1:
        raise ValueError("--beam-size must be >= 1")
