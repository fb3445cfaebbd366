"""The modified GRU+CTC decoder of seed 001 (runs #1-#11), each change behind its own switch.

Unchanged upstream pieces are imported from ``reference.neural_seq_decoder``. Modules:
``config`` (keys, run presets, CLI), ``data`` (masks, loader options), ``model``
(LayerNorm + input dropout), ``optim`` (optimizers, schedules, AMP, gradient guards),
``lengths`` (T_eff formulas and their comparison), ``beam`` (prefix beam search),
``checkpoint`` (exact resume), ``trainer``, ``train`` (CLI), ``evaluate`` (greedy vs
beam on saved weights) and ``toggles`` (the machine-readable change list).
"""
