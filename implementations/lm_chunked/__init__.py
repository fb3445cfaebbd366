"""Chunk-based next-token-prediction trainer of seed 002 (the seed's train_slimpajama.py), built on reference.lm_sample.

Only the training loop and its flags are its own; tokenizer, model, data streaming, metrics, charts and
checkpoints are imported from `reference.lm_sample` unchanged.
"""
