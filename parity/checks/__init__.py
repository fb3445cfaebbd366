"""Differential checks: each module compares one channel of two traces and returns a Finding."""
