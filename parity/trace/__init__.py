"""Trace files: the schema, a crash-safe writer and a validating reader."""
