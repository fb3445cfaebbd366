"""OCCPAST's modified OccCANINE finetune trainer (seed 000), built on reference.histocc."""
