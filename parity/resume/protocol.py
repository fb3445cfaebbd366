"""The `[resume]` table of a pair file, as the resume runner takes it (parsed by parity.pairs)."""

from __future__ import annotations

from parity.pairs import RESUME_PLACEHOLDERS as PLACEHOLDERS
from parity.pairs import Pair, ResumeProtocol

__all__ = ["PLACEHOLDERS", "ResumeProtocol", "load_protocol"]


def load_protocol(pair: Pair) -> ResumeProtocol:
    """The pair's resume protocol; ConfigError when the pair file has no `[resume]` table."""
    return pair.resume_protocol()
