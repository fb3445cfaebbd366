"""The trainer's own source files, hashed whole and per function (through the AST), with their git state."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from parity.capture import metadata
from parity.capture.settings import is_library_file, library_dirs


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def function_hashes(source: bytes) -> dict[str, str]:
    """{qualname: hash of the function's AST}: `Class.method`, nested functions joined with dots.

    `ast.dump` leaves out line and column numbers, so moving a function or editing another one
    keeps its hash; any change to its own code (docstring included) changes it.
    """
    hashes: dict[str, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    hashes[name] = _hash(ast.dump(child).encode())
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    try:
        visit(ast.parse(source), "")
    except (SyntaxError, ValueError):  # a file that no longer parses still has its whole-file hash
        return {}
    return hashes


#: Code that compilers write and import at run time (inductor's and triton's caches, in the temp dir):
#: it changes with every compile, and nobody wrote it.
_GENERATED = re.compile(r"[/\\](torchinductor|triton)[^/\\]*[/\\]")


def trainer_modules() -> dict[str, str]:
    """{resolved path: module name} of every imported .py file that is neither a library nor parity."""
    library = library_dirs()
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if not isinstance(filename, str) or not filename.endswith(".py"):
            continue
        if is_library_file(filename, library) or _GENERATED.search(filename):
            continue
        found.setdefault(os.path.realpath(filename), name)
    return found


def _main_location(paths: list[str]) -> Path | None:
    """Where the trainer lives: `__main__`'s folder, unless `__main__` is a library's (`python -m pytest`)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if isinstance(main_file, str) and os.path.exists(main_file) and not is_library_file(main_file, library_dirs()):
        return Path(os.path.realpath(main_file)).parent
    if paths:
        return Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
    return None


def collect_sources() -> dict[str, Any]:
    """META_SOURCES: paths relative to the git root of `__main__`'s file (else the files' common parent)."""
    modules = trainer_modules()
    paths = sorted(modules)
    location = _main_location(paths)
    git_state = metadata.trainer_git_state(location) if location is not None else None
    if git_state is not None and git_state.get("root"):
        root = os.path.realpath(git_state["root"])
    elif paths:
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
    else:
        root = str(location or os.getcwd())
    files: dict[str, Any] = {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError:  # deleted or unreadable since import: nothing to hash
            continue
        relative = Path(os.path.relpath(path, root)).as_posix()
        files[relative] = {"module": modules[path], "sha": _hash(data), "functions": function_hashes(data)}
    return {"root": root, "git": git_state, "files": files}
