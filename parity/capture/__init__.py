"""Capture: instrument torch globally and write a per-step trace, without editing the trainer."""
