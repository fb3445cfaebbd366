"""Sample-by-sample next-token-prediction trainer of seed 002 (the seed's train_advanced.py), and the modules it shares.

tokenizer (SentencePiece or byte), corpus (synthetic shards), data (streaming with a fetch timeout,
per-document samples, token packing), model (decoder-only transformer), metrics and visualization
(seven charts, JSON exports), checkpoints (the three-file set) and session (everything around a step)
are what the seed calls identical in both trainers: `implementations.lm_chunked` imports them from here.
"""
