"""Supervised fine-tune of a causal LM with `transformers.Trainer`: the BEFORE side of seed 004.

The trainer is written the way the seed's author writes it: one script (`train.py`) with argparse flags,
a JSONL chain-of-thought dataset, a byte tokenizer, and a `TrainingArguments` literal. Every argument the
seed's AFTER version changes is a flag here, defaulting to its BEFORE value, so that `parity ablate` can
flip each one alone. Nothing is downloaded: the model is built from a `LlamaConfig` preset with random
weights, the tokenizer maps bytes to ids, and `data.py` generates the dataset from a seed.
"""
