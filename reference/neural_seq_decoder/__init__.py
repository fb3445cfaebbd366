"""Clean-room re-implementation of the cffan/neural_seq_decoder training path (GRU + CTC phoneme decoder).

Modules: ``config`` (keys, defaults, presets, CLI), ``data`` (pickle layout, dataset,
collate), ``model`` (GaussianSmoothing, GRUDecoder), ``ctc`` (loss lengths, greedy
decoding, error rate, evaluation pass), ``trainer`` (``train_model``), ``train`` (CLI
entry point) and ``make_data`` (synthetic datasets in the upstream pickle layout).
Written from the project's fact sheet only; no upstream code or text is copied.
"""
