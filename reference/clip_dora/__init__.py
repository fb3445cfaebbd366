"""CLIP+DoRA behavioural-alignment trainer whose checkpoint holds only DoRA parameters and RNG states.

This is the "reference" half of a checkpoint-resume trainer pair: it saves exactly
what the checkpoint-spec analysis lists as "currently saved", so a resumed run
starts with a fresh AdamW and a reset early-stopping counter and is NOT bit-exact
with a continuous run. `implementations.clip_dora_complete` is the fixed half.
"""
