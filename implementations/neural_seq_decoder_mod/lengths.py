"""CTC input lengths (T_eff): upstream's formula, the seed's floor/clamp "fix", and a tool comparing them.

``python -m implementations.neural_seq_decoder_mod.lengths --datasetPath FILE.pkl [--kernelLen 32 --strideLen 4]``
prints where the formulas disagree on a dataset; ``--lengths 10 31 32 40`` checks given
trial lengths instead.

What the comparison shows: for T >= K, truncation and floor agree, so the seed's run #9
"fix" changes nothing there; they differ only for T < K, where upstream gives 0 or a
negative length and the fix gives 1. Neither scores the last full window; the extra
"windows" formula (floor + 1, the number of full windows) does.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from reference.neural_seq_decoder.ctc import upstream_input_lengths


def floor_input_lengths(time_lens: torch.Tensor, kernel_len: int, stride_len: int) -> torch.Tensor:
    """Seed run #9: floor division, clamped to at least 1."""
    return torch.clamp((time_lens - kernel_len) // stride_len, min=1).to(torch.int32)


def window_input_lengths(time_lens: torch.Tensor, kernel_len: int, stride_len: int) -> torch.Tensor:
    """Not in the seed: the number of windows fully inside the trial, at least 1."""
    return torch.clamp((time_lens - kernel_len) // stride_len + 1, min=1).to(torch.int32)


INPUT_LENGTHS = {
    "upstream": upstream_input_lengths,
    "floor": floor_input_lengths,
    "windows": window_input_lengths,
}


def input_lengths_fn(name: str):
    return INPUT_LENGTHS[name]


def compare_input_lengths(trial_lengths, kernel_len: int = 32, stride_len: int = 4) -> dict:
    """Both formulas for the given trial lengths, and where they differ.

    Returns plain lists so the result is JSON-ready: lengths, upstream, floor, windows,
    differs (indices where upstream != floor), short (indices with T < kernel_len).
    """
    lengths = torch.as_tensor(np.asarray(trial_lengths), dtype=torch.int32)
    upstream = upstream_input_lengths(lengths, kernel_len, stride_len)
    floor = floor_input_lengths(lengths, kernel_len, stride_len)
    windows = window_input_lengths(lengths, kernel_len, stride_len)
    return {
        "kernelLen": kernel_len,
        "strideLen": stride_len,
        "lengths": lengths.tolist(),
        "upstream": upstream.tolist(),
        "floor": floor.tolist(),
        "windows": windows.tolist(),
        "differs": torch.nonzero(upstream != floor).flatten().tolist(),
        "short": torch.nonzero(lengths < kernel_len).flatten().tolist(),
    }


def dataset_trial_lengths(path: str) -> list:
    """All trial lengths of a dataset pickle, train then test."""
    from reference.neural_seq_decoder.data import load_dataset

    loaded = load_dataset(path)
    return [feats.shape[0] for split in ("train", "test") for day in loaded[split] for feats in day["sentenceDat"]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m implementations.neural_seq_decoder_mod.lengths", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--datasetPath", help="dataset pickle whose trial lengths to check")
    source.add_argument("--lengths", type=int, nargs="+", help="explicit trial lengths")
    parser.add_argument("--kernelLen", type=int, default=32)
    parser.add_argument("--strideLen", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="print every length, not just the summary")
    namespace = parser.parse_args(argv)
    lengths = namespace.lengths or dataset_trial_lengths(namespace.datasetPath)
    result = compare_input_lengths(lengths, namespace.kernelLen, namespace.strideLen)
    if not namespace.full:
        result = {
            "kernelLen": result["kernelLen"],
            "strideLen": result["strideLen"],
            "trials": len(lengths),
            "n_differ": len(result["differs"]),
            "n_short": len(result["short"]),
            "examples": [
                {"T": result["lengths"][i], "upstream": result["upstream"][i], "floor": result["floor"][i]}
                for i in result["differs"][:10]
            ],
        }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
