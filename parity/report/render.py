"""Write a rendered report to a file atomically (temp file + rename), or to stdout for "-"."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from parity.exceptions import ParityError


def _mode_for(path: Path) -> int:
    """The mode `open(path, "w")` would leave: an existing file keeps its own, a new one gets 0666 & ~umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)  # the only way to read it; set straight back
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Never leaves a half-written file: readers see the old content or the new, nothing between."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600 files; a report is an ordinary file for whoever may read the folder.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: str | os.PathLike) -> None:
    """Raise ParityError unless a report (and its plots beside it) can be written at `path`.

    Called before anything is rendered, so a bad path leaves nothing behind. Writability is probed
    with a real temporary file: permission bits say nothing for root or on a read-only mount."""
    path = Path(path)
    if path.is_dir():
        raise ParityError(f"{path}: is a directory; give a file name, e.g. {path / 'report.md'}")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise ParityError(f"{path}: {existing} is a file, so nothing can be written under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".parity-probe.", dir=existing)
    except OSError as exc:
        raise ParityError(f"{path}: cannot write in {existing}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def emit(text: str, outfile: str | os.PathLike | None) -> None:
    if outfile in (None, "-"):
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")
    else:
        try:
            write_atomic(outfile, text)
        except OSError as exc:
            raise ParityError(f"{outfile}: cannot write the report: {exc.strerror or exc}") from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def without_machine_paths(text: str, trace_paths: list[str | os.PathLike]) -> str:
    """Paths inside the project as written from its root: a report (markdown or JSON) must read the same on
    any machine. The project is the one holding each trace's run directory."""
    from parity.report.reproduce import find_project_root

    for trace_path in trace_paths:
        root = find_project_root(Path(trace_path).parent)
        if (root / "pyproject.toml").is_file() and str(root) != "/":
            text = text.replace(str(root) + "/", "").replace(str(root), ".")
    return text


def to_json_text(data: Any) -> str:
    return json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False, default=str) + "\n"
