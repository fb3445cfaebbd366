"""Synthetic chain-of-thought SFT data (prompt, step-by-step reasoning, answer), its tokenisation and collator.

`python -m reference.hf_sft.data --out data.jsonl --n 4000 --seed 0` writes one JSON object per line.
Each example is an arithmetic word problem whose reasoning applies the listed operations one step at a
time. Lengths (in tokens of `ByteTokenizer`, bos and eos included) are drawn first and hit exactly: most
lie between 150 and 1,480 tokens (the seed's "data max=1481"), and about 4% lie between 1,560 and 1,990,
so a 1,536-token truncation cuts some examples and a 2,048 one cuts none. `--scale S` divides every
length by S (keeping each example at least as long as its shortest possible text), for CPU runs with
`train.py --scale S`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference.hf_sft.tokenizer import ByteTokenizer

TAIL_FRACTION = 0.04
"""Share of examples drawn from the long tail (1,560-1,990 tokens at scale 1)."""
BODY_RANGE = (150, 1480)
TAIL_RANGE = (1560, 1990)
_NAMES = ("Ann", "Bo", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lea")
_ITEMS = ("pens", "coins", "apples", "books", "shells", "cards", "stamps", "marbles")


def _target_length(rng: random.Random) -> int:
    if rng.random() < TAIL_FRACTION:
        return rng.randint(*TAIL_RANGE)
    return min(BODY_RANGE[1], max(BODY_RANGE[0], int(rng.lognormvariate(math.log(520), 0.5))))


def _operation(rng: random.Random, value: int) -> tuple[str, str, int]:
    """One operation as listed in the prompt, its worked step, and the new value (kept positive and small)."""
    kind = rng.choice(("+", "-", "x", "/") if value % 2 == 0 else ("+", "-", "x"))
    if kind == "x" and value < 500:
        k = rng.randint(2, 3)
        return f"x{k}", f"{value} x {k} = {value * k}", value * k
    if kind == "/" and value > 1:
        return "/2", f"{value} / 2 = {value // 2}", value // 2
    if kind == "-" and value > 10:
        k = rng.randint(1, value - 1)
        return f"-{k}", f"{value} - {k} = {value - k}", value - k
    k = rng.randint(1, 99)
    return f"+{k}", f"{value} + {k} = {value + k}", value + k


def _render(name: str, item: str, start: int, ops: list[str], steps: list[str], filler: str, value: int) -> dict[str, str]:
    prompt = f"Question: {name} has {start} {item}, then does {', '.join(ops)}. How many {item} now?\n"
    reasoning = "".join(f"Step {i + 1}: {s}.\n" for i, s in enumerate(steps)) + filler
    return {"prompt": prompt, "reasoning": reasoning, "answer": f"Answer: {value}"}


def make_example(rng: random.Random, target: int, tokenizer: ByteTokenizer) -> dict[str, str]:
    """An example of exactly `target` tokens, or of the shortest possible one (one operation) when longer."""
    name, item, start = rng.choice(_NAMES), rng.choice(_ITEMS), rng.randint(2, 99)
    ops: list[str] = []
    steps: list[str] = []
    value = start
    while True:
        op, step, new = _operation(rng, value)
        trial = _render(name, item, start, [*ops, op], [*steps, step], "", new)
        if ops and tokenizer.num_tokens(as_text(trial)) > target:
            break
        ops.append(op)
        steps.append(step)
        value = new
    example = _render(name, item, start, ops, steps, "", value)
    gap = target - tokenizer.num_tokens(as_text(example))
    # A verification line makes up the last few tokens, so that lengths are exact at every --scale.
    filler = "" if gap <= 0 else ("Check" + " ok" * gap)[: gap - 1] + "\n"
    return _render(name, item, start, ops, steps, filler, value)


def as_text(example: dict[str, str]) -> str:
    """The training text of an example: prompt, reasoning and answer, in that order."""
    return example["prompt"] + example["reasoning"] + example["answer"]


def generate(n: int, seed: int = 0, scale: int = 1) -> list[dict[str, str]]:
    """`n` examples, deterministic in (`n`, `seed`, `scale`): the i-th example depends only on seed and i."""
    tokenizer = ByteTokenizer()
    examples = []
    for i in range(n):
        # One generator per example: its length and content do not depend on how many draws the others took.
        rng = random.Random(seed * 1_000_003 + i)
        examples.append(make_example(rng, max(1, round(_target_length(rng) / scale)), tokenizer))
    return examples


def write_jsonl(examples: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for example in examples:
            f.write(json.dumps(example, sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def tokenize(example: dict[str, Any], tokenizer: ByteTokenizer, max_length: int) -> dict[str, list[int]]:
    """input_ids truncated at `max_length`; labels are the same ids (the collator masks padding to -100)."""
    ids = tokenizer.encode(as_text(example), max_length=max_length)
    return {"input_ids": ids, "labels": list(ids)}


@dataclass
class PadCollator:
    """Pads each batch to its own longest sequence: pad id in input_ids, 0 in attention_mask, -100 in labels.

    A module-level dataclass so that DataLoader worker processes can pickle it."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        # Imported here: the generator entry point (a pair's setup step) then starts without torch.
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            mask[row, :n] = 1
            labels[row, :n] = torch.tensor(f["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference.hf_sft.data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    parser.add_argument("--n", type=int, default=4000, help="number of examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1, help="divide every length by this (CPU runs)")
    args = parser.parse_args(argv)
    examples = generate(args.n, args.seed, args.scale)
    write_jsonl(examples, args.out)
    lengths = sorted(ByteTokenizer().num_tokens(as_text(e)) for e in examples)
    print(f"wrote {len(examples)} examples to {args.out}: tokens min={lengths[0]} "
          f"median={lengths[len(lengths) // 2]} max={lengths[-1]} (scale {args.scale})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
