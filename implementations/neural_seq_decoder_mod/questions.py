"""Measured answers to the questions seed 001's team guessed at, as markdown.

    python -m implementations.neural_seq_decoder_mod.questions --run RUN_DIR --ablation ABLATION.json -o OUT.md

RUN_DIR is a recorded run of the decoder at upstream settings (it holds `data.pkl` and `work/`
with the trained weights); ABLATION.json is `parity ablate --format json` output for the
baseline-vs-run11 pair. Every number printed is computed here from those files.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from implementations.neural_seq_decoder_mod.evaluate import evaluate_checkpoint
from implementations.neural_seq_decoder_mod.lengths import compare_input_lengths, dataset_trial_lengths

SHORT_TRIALS = [8, 16, 24, 31, 32, 33, 35, 36, 40]


def _t_eff(dataset: str) -> list[str]:
    on_data = compare_input_lengths(dataset_trial_lengths(dataset))
    short = compare_input_lengths(SHORT_TRIALS)
    rows = "\n".join(f"| {t} | {u} | {f} | {w} |" for t, u, f, w in
                     zip(short["lengths"], short["upstream"], short["floor"], short["windows"]))
    return ["## Does the T_eff change alter the CTC input lengths?", "",
            f"On the data at hand ({len(on_data['lengths'])} trials, lengths {min(on_data['lengths'])}-"
            f"{max(on_data['lengths'])}, kernelLen {on_data['kernelLen']}, strideLen {on_data['strideLen']}): "
            f"upstream's truncating division and run #9's floor/clamp give different lengths for "
            f"**{len(on_data['differs'])}** trials; {len(on_data['short'])} trials are shorter than kernelLen.", "",
            "On trials around and below kernelLen:", "", "| T | upstream | floor, clamp(min=1) | full windows |",
            "|---:|---:|---:|---:|", rows, "",
            "The two formulas agree whenever T >= kernelLen; they differ only for shorter trials, where upstream's "
            "length is zero or negative." if not on_data["differs"] else "", ""]


def _decoders(checkpoint: str, dataset: str) -> list[str]:
    greedy = evaluate_checkpoint(checkpoint, "greedy", dataset_path=dataset)
    beam = evaluate_checkpoint(checkpoint, "beam", beam_size=20, dataset_path=dataset)
    return ["## Does beam search change the reported error rate?", "",
            f"Same weights (`{checkpoint}`), same test set: greedy PER **{greedy['per']:.4f}**, prefix beam search "
            f"(beam 20) PER **{beam['per']:.4f}**: a difference of {beam['per'] - greedy['per']:+.4f} "
            f"({100 * (beam['per'] - greedy['per']) / greedy['per']:+.1f}% relative). Training is untouched by the "
            "decoder: its ablation row is IDENTICAL in every training channel.", ""]


def _instability(ablation: dict) -> list[str]:
    base = ablation["stability"]["baseline"]
    rows = sorted(ablation["toggles"], key=lambda t: -(t["stability_applied"].get("max_grad_norm") or 0))
    table = "\n".join(f"| `{t['name']}` | {t['stability_applied'].get('max_grad_norm') or float('nan'):.4g} | "
                      f"{t['stability_applied'].get('first_nonfinite_loss_step') if t['stability_applied'].get('first_nonfinite_loss_step') is not None else '-'} |"
                      for t in rows)
    nan = [t["name"] for t in rows if t["stability_applied"].get("first_nonfinite_loss_step") is not None]
    answer = (f"Applied alone to the baseline, {', '.join(f'`{n}`' for n in nan)} produced a non-finite loss."
              if nan else "No single change produced a non-finite loss within this budget.")
    return ["## Which single change accounts for the instability of runs #1-#2?", "",
            f"Runs #1-#2 kept upstream's lr 0.02. The baseline at upstream settings has a largest pre-clip gradient "
            f"norm of {base.get('max_grad_norm') or float('nan'):.4g} and "
            f"{'no' if base.get('first_nonfinite_loss_step') is None else 'a'} non-finite loss "
            f"over the budget. {answer} Largest gradient norm with one change applied:", "",
            "| change | max pre-clip grad norm | first non-finite loss |", "|---|---:|---:|", table, ""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m implementations.neural_seq_decoder_mod.questions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="recorded run directory of the decoder at upstream settings")
    p.add_argument("--ablation", required=True, help="JSON from `parity ablate --format json`")
    p.add_argument("-o", "--output", help="markdown file (default: stdout)")
    args = p.parse_args(argv)
    dataset = os.path.join(args.run, "data.pkl")
    checkpoint = os.path.join(args.run, "work", "checkpoint.pt")
    with open(args.ablation) as handle:
        ablation = json.load(handle)
    lines = ["# neural_seq_decoder: the seed's open questions, measured", "",
             *_t_eff(dataset), *_decoders(checkpoint, dataset), *_instability(ablation),
             "## Reproduce", "", "```bash", "python -m implementations.neural_seq_decoder_mod.questions "
             + " ".join(argv if argv is not None else sys.argv[1:]), "```", ""]
    text = "\n".join(lines)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
