"""CLIP+DoRA trainer whose checkpoint holds everything the checkpoint-spec analysis asks for.

The "complete" half of the pair: the same loop, data and model as
`reference.clip_dora`, with a checkpointer that also saves and restores the
optimizer moments, early-stopping counters, scheduler state, epoch and run
metadata, so an interrupted-and-resumed CPU run is bit-identical to a continuous one.
"""
