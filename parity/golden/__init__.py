"""Goldens: a pair's baseline trace stored with its provenance, per environment, for gates to compare with.

Public API (the session facade calls these; nothing here records or runs a trainer):
  environment_id(header_meta) -> str            the folder name of the environment a trace was recorded in
  provenance_from_header(header, ...) -> Provenance, provenance_mismatches(stored, current) -> [str]
  save_golden(trace_or_run_dir, directory, *, pair_name, pair_file_hash, code_revision) -> Path
  load_golden(directory, pair, env) -> (Trace, Provenance); list_environments(directory, pair) -> [str]
  golden_change_summary(old, new) -> str        markdown for `--update-golden`, to paste into a pull request
"""

from parity.golden.envid import (Provenance, environment_id, provenance_from_header, provenance_mismatches,
                                 read_environment_facts)
from parity.golden.store import list_environments, load_golden, save_golden
from parity.golden.summary import golden_change_summary

__all__ = ["Provenance", "environment_id", "golden_change_summary", "list_environments", "load_golden",
           "provenance_from_header", "provenance_mismatches", "read_environment_facts", "save_golden"]
