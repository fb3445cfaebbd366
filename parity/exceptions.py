"""One hierarchy for every error parity reports; only `cli.main` maps them to exit codes."""

from __future__ import annotations


class ParityError(Exception):
    """Base class: a problem with the user's input or setup (exit code 2)."""

    #: Short slug pointing at the README section that explains the fix (tests/test_cli_errors.py checks it exists).
    docs: str = "README.md"

    def __init__(self, *args: object, docs: str | None = None) -> None:
        super().__init__(*args)
        if docs is not None:  # a raise site that knows a closer section than its class's
            self.docs = docs


class TraceError(ParityError):
    """A trace file is missing, corrupt, truncated mid-line, or of another schema."""

    docs = "README.md#trace-format"


class ConfigError(ParityError):
    """A pair file, a command line or an option combination is invalid."""

    docs = "README.md#pair-files"


class UsageError(ConfigError):
    """A command's arguments are invalid (not a pair file): the fix is in how the command is called."""

    docs = "README.md#commands"


class BaselineError(ParityError):
    """A baseline could not be produced: the command failed, a git revision is unknown, ..."""

    docs = "README.md#commands"


class CheckpointError(ParityError):
    """A checkpoint is unreadable, truncated, or would need an unsafe pickle."""

    docs = "README.md#resume-checks-and-checkpoint-audits"


class GoldenError(BaselineError):
    """A stored golden cannot be used: another schema version, a checksum mismatch, a missing file."""

    docs = "goldens/README.md"


class GoldenMissingError(GoldenError):
    """No golden is stored for this pair and environment; the message lists the environments that have one."""
