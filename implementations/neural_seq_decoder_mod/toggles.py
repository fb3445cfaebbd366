"""Machine-readable list of the changes between upstream and the seed's run #11, for one-at-a-time ablation.

``TOGGLES[name] = (baseline_args, run11_args)``: command-line fragments for
``python -m implementations.neural_seq_decoder_mod.train``. Appending one toggle's
run11 fragment to an otherwise upstream command line switches on that change alone;
appending every run11 fragment reproduces ``--preset-run run11``, and every baseline
fragment reproduces the reference. ``OTHER_SWITCHES`` lists changes that earlier runs
made but run #11 does not carry (same shape: (baseline, changed)).
"""
from __future__ import annotations

TOGGLES: dict = {
    "optimizer": (["--optimizer", "adam"], ["--optimizer", "adamw"]),
    "weight_decay": (["--weight-decay", "1e-05"], ["--weight-decay", "0.0001"]),
    "lr": (["--lr", "0.02"], ["--lr", "0.0008"]),
    "lr_schedule": (
        ["--lr-schedule", "linear"],
        ["--lr-schedule", "plateau", "--plateau-patience", "8", "--plateau-factor", "0.5", "--plateau-min-lr", "1e-05"],
    ),
    "clip_grad": (["--clip-grad", "0"], ["--clip-grad", "1.5"]),
    "white_noise": (["--white-noise", "0.8"], ["--white-noise", "0.0"]),
    "constant_offset": (["--constant-offset", "0.2"], ["--constant-offset", "0.0"]),
    "time_mask": (
        ["--time-mask-prob", "0"],
        ["--time-mask-prob", "0.1", "--time-mask-width", "40", "--time-mask-max", "2"],
    ),
    "freq_mask": (
        ["--freq-mask-prob", "0"],
        ["--freq-mask-prob", "0.1", "--freq-mask-width", "12", "--freq-mask-max", "2"],
    ),
    "layer_norm": (["--layer-norm", "off"], ["--layer-norm", "on"]),
    "input_dropout": (["--input-dropout", "0"], ["--input-dropout", "0.1"]),
    "t_eff": (["--t-eff", "upstream"], ["--t-eff", "floor"]),
    "nan_skip": (["--nan-skip", "off"], ["--nan-skip", "on"]),
    "decoder": (["--decoder", "greedy"], ["--decoder", "beam", "--beam-size", "20"]),
    "cudnn_benchmark": (["--cudnn-benchmark", "off"], ["--cudnn-benchmark", "on"]),
    "compile": (["--compile", "off"], ["--compile", "on"]),
    "dataloader_workers": (
        ["--num-workers", "0", "--persistent-workers", "off"],
        ["--num-workers", "4", "--persistent-workers", "on"],
    ),
    "pin_memory": (["--pin-memory", "auto"], ["--pin-memory", "on"]),
    "non_blocking": (["--non-blocking", "off"], ["--non-blocking", "on"]),
}

OTHER_SWITCHES: dict = {
    # run6 only (AMP was switched off in run8 and never back on).
    "amp": (["--amp", "off"], ["--amp", "auto"]),
    "dropout": (["--dropout", "0.4"], ["--dropout", "0.3"]),
    # runs 3-4 used warmup + cosine; numbers of run 4.
    "warmup_cosine": (
        ["--lr-schedule", "linear"],
        ["--lr-schedule", "warmup_cosine", "--warmup-steps", "1000", "--warmup-start-lr", "0",
         "--lrStart", "0.002", "--lrEnd", "0.0008"],
    ),
    # "adaptive LR" the changelog says run8 switched off; its factor is not given.
    "nan_lr_backoff": (["--nan-lr-backoff", "1.0"], ["--nan-lr-backoff", "0.5"]),
}

#: Toggles that change only speed or placement, never values (on CPU all of them are no-ops
#: or value-preserving). A harness may expect them to keep losses equal within tolerance.
PERFORMANCE_ONLY = ("cudnn_benchmark", "compile", "dataloader_workers", "pin_memory", "non_blocking")


def baseline_args() -> list:
    """All baseline fragments concatenated: an explicit spelling of upstream behaviour."""
    return [arg for base, _ in TOGGLES.values() for arg in base]


def run11_args() -> list:
    """All run11 fragments concatenated: equivalent to ``--preset-run run11``."""
    return [arg for _, changed in TOGGLES.values() for arg in changed]
