"""AFTER side of seed 004: the reference SFT trainer with the seed's optimised TrainingArguments.

Only `train.py` lives here; the model, tokenizer, data and training code are imported unchanged from
`reference.hf_sft`. Library-version changes (the seed's other half) are out of scope.
"""
