"""Clean-room reference re-implementation of OccCANINE's (histocc) finetuning path at upstream 844e6be."""
