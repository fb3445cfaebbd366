"""Evaluate saved weights with greedy or prefix-beam decoding, to separate decoder gains from training gains.

``python -m implementations.neural_seq_decoder_mod.evaluate --checkpoint DIR/modelWeights --decoder greedy|beam``

Accepts a ``modelWeights`` state_dict (either trainer) or a mod ``checkpoint.pt``. The
model is rebuilt from the pickled ``args`` beside it, with nDays from the dataset
(the seed's fix #13; upstream's loadModel defaulted to 24). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys

import torch

from reference.neural_seq_decoder.ctc import evaluate, make_ctc_loss
from reference.neural_seq_decoder.data import SpeechDataset, load_dataset, pad_collate

from .beam import make_decoder
from .config import MOD_DEFAULTS
from .lengths import input_lengths_fn
from .model import build_mod_model


def _load_state(path: str, device: str) -> dict:
    state = torch.load(path, map_location=device, weights_only=False)
    return state["model"] if isinstance(state, dict) and "format_version" in state else state


def evaluate_checkpoint(checkpoint: str, decoder: str = "greedy", beam_size: int = 20, t_eff: str | None = None,
                        dataset_path: str | None = None, device: str = "cpu") -> dict:
    """Load weights, run one evaluation pass, return {"decoder", "per", "test_loss", ...}."""
    with open(os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "args"), "rb") as handle:
        saved = pickle.load(handle)
    # Reference args lack the mod keys; their upstream values reproduce the reference model.
    args = {**MOD_DEFAULTS, **saved, "device": device}
    args["datasetPath"] = dataset_path or saved["datasetPath"]
    args["t_eff"] = t_eff or args["t_eff"]
    loaded = load_dataset(args["datasetPath"])
    model = build_mod_model(args, n_days=len(loaded["train"]))
    model.load_state_dict(_load_state(checkpoint, device), strict=True)
    loader = torch.utils.data.DataLoader(SpeechDataset(loaded["test"]), batch_size=args["batchSize"],
                                         shuffle=False, collate_fn=pad_collate)
    test_loss, per = evaluate(model, loader, make_ctc_loss(), args, input_lengths_fn=input_lengths_fn(args["t_eff"]),
                              decode_fn=make_decoder(decoder, beam_size))
    return {"checkpoint": checkpoint, "decoder": decoder, "beam_size": beam_size if decoder == "beam" else None,
            "t_eff": args["t_eff"], "per": per, "test_loss": float(test_loss)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m implementations.neural_seq_decoder_mod.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="modelWeights or checkpoint.pt (args file must sit beside it)")
    parser.add_argument("--decoder", choices=("greedy", "beam"), default="greedy")
    parser.add_argument("--beam-size", type=int, default=20)
    parser.add_argument("--t-eff", choices=("upstream", "floor", "windows"), default=None, help="default: the run's own")
    parser.add_argument("--datasetPath", default=None, help="default: the run's own dataset")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    namespace = parser.parse_args(argv)
    result = evaluate_checkpoint(namespace.checkpoint, namespace.decoder, namespace.beam_size, namespace.t_eff,
                                 namespace.datasetPath, namespace.device)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
