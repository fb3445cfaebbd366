"""`parity features A B`: a feature matrix of two trainers measured from their runs (artifacts, trace, numerics)."""
