"""Read a checkpoint file or directory into one plain tree, refusing unsafe pickles unless trusted.

Reading never writes: no cache, no converted copy, no lock file next to the checkpoint.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.exceptions import CheckpointError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
JSON_SUFFIX = ".json"

#: Files of a checkpoint directory that hold run configuration, not state. Trainers (Hugging Face's
#: `training_args.bin`) pickle whole argument objects into them, so an unsafe one is recorded, not fatal.
CONFIG_FILES = frozenset({"training_args.bin", "args.bin", "hparams.bin", "config.bin"})

UNSAFE_CONFIG_NOTE = "config present, not loaded (unsafe pickle)"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
_LEGACY_PICKLES = 5
"""torch's pre-zip format is five pickles (magic, protocol, sys info, object, storage keys) then raw storages."""


@dataclass(frozen=True)
class Unloaded:
    """Stands in a loaded tree for a file that was deliberately not read; `reason` says why."""

    name: str
    reason: str


@dataclass(frozen=True)
class FileEntry:
    """One file of a checkpoint and what happened to it."""

    name: str
    format: str
    """"torch", "safetensors", "json", or "other" for files a checkpoint directory may hold but the audit skips."""
    status: str
    """"loaded", "not loaded (unsafe pickle)", or "ignored"."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint as plain Python: dicts, lists, tuples, scalars, tensors, numpy arrays.

    `tree` is the loaded object for a single file, and a dict keyed by file name for a directory.
    It never holds unpickled user classes unless `trusted` is True.
    """

    path: Path
    kind: str
    """"torch", "safetensors" or "directory"."""
    tree: Any
    files: list[FileEntry] = field(default_factory=list)
    trusted: bool = False

    @property
    def name(self) -> str:
        return str(self.path)


def load_checkpoint(path: str | Path, *, trust: bool = False) -> LoadedCheckpoint:
    """Load a `.pt/.pth/.bin/.ckpt` pickle, a `.safetensors` file, or a directory of them.

    Pickles load with `weights_only=True` (plain numpy arrays allowed, as RNG states hold them); one that
    needs more raises CheckpointError unless `trust` is True. Missing, empty, truncated and foreign files
    raise CheckpointError naming the path and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    if path.is_dir():
        return _load_directory(path, trust)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        tree = _load_pickle(path, trust)
        return LoadedCheckpoint(path, "torch", tree, [FileEntry(path.name, "torch", "loaded")], trust)
    if suffix == SAFETENSORS_SUFFIX:
        tree = _load_safetensors(path)
        return LoadedCheckpoint(path, "safetensors", tree, [FileEntry(path.name, "safetensors", "loaded")], trust)
    raise CheckpointError(f"{path}: not a checkpoint file type ({suffix or 'no suffix'}); expected "
                          f"{', '.join(PICKLE_SUFFIXES)}, {SAFETENSORS_SUFFIX} or a checkpoint directory")


def _load_directory(path: Path, trust: bool) -> LoadedCheckpoint:
    tree: dict[str, Any] = {}
    files: list[FileEntry] = []
    subdirs: list[str] = []
    for child in sorted(path.iterdir()):
        if child.is_dir():
            subdirs.append(child.name)
            continue
        suffix = child.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            try:
                tree[child.name] = _load_pickle(child, trust)
                files.append(FileEntry(child.name, "torch", "loaded"))
            except _UnsafePickle:
                if child.name not in CONFIG_FILES:
                    raise
                tree[child.name] = Unloaded(child.name, UNSAFE_CONFIG_NOTE)
                files.append(FileEntry(child.name, "torch", "not loaded (unsafe pickle)"))
        elif suffix == SAFETENSORS_SUFFIX:
            tree[child.name] = _load_safetensors(child)
            files.append(FileEntry(child.name, "safetensors", "loaded"))
        elif suffix == JSON_SUFFIX:
            tree[child.name] = _load_json(child)
            files.append(FileEntry(child.name, "json", "loaded"))
        else:
            files.append(FileEntry(child.name, "other", "ignored"))
    if not any(f.format in ("torch", "safetensors") for f in files):
        hint = f"; it holds directories {', '.join(subdirs[:5])}: audit one of those" if subdirs else ""
        raise CheckpointError(f"{path}: no checkpoint files in this directory (no {', '.join(PICKLE_SUFFIXES)} "
                              f"or {SAFETENSORS_SUFFIX} file){hint}")
    return LoadedCheckpoint(path, "directory", tree, files, trust)


class _UnsafePickle(CheckpointError):
    """A pickle that `weights_only` refuses; a directory may tolerate it for config files."""


def _load_pickle(path: Path, trust: bool) -> Any:
    import torch

    data = _read_bytes(path)
    if data.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint (zip archive without its central "
                                  f"directory; {len(data)} bytes): was the save interrupted or the copy cut short?")
    elif data[0] == _PICKLE_PROTO:
        problem = _legacy_problem(data)
        if problem:
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint (legacy torch format: {problem})")
    else:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                              f"it starts with {data[:16]!r})")
    if trust:
        return _torch_load(path, weights_only=False)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _UnsafePickle(f"{path}: needs an unsafe pickle (it contains {_unsafe_what(path, exc)}); "
                            "re-run with --trust-checkpoint only if you trust its source") from None


def _torch_load(path: Path, *, weights_only: bool) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError:
        if weights_only:
            raise
        raise CheckpointError(f"{path}: corrupt checkpoint: the pickle inside does not load") from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, AttributeError, ImportError, ModuleNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {first})") from None


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    if not data:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    return data


def _legacy_problem(data: bytes) -> str | None:
    """Why a pre-zip torch file cannot be complete, or None. torch itself misreports a cut one as unsafe."""
    stream = io.BytesIO(data)
    for index in range(_LEGACY_PICKLES):
        try:
            for _ in pickletools.genops(stream):
                pass
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            return f"pickle {index + 1} of {_LEGACY_PICKLES} ends early ({exc})"
    return None


def _numpy_globals() -> list[Any]:
    """Globals that rebuild plain numpy arrays (RNG states hold them); none of them runs user code."""
    import numpy as np

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    dtype_classes = [cls for cls in vars(getattr(np, "dtypes", object)).values() if isinstance(cls, type)]
    return [reconstruct, np.ndarray, np.dtype, *dtype_classes]


def _unsafe_what(path: Path, exc: Exception) -> str:
    """The globals torch would not load, as torch names them."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy files and odd archives: fall back on the error text  # noqa: BLE001
        names = []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_globals()}
    names = [n for n in names if n not in allowed]
    if names:
        return ", ".join(f"GLOBAL {n}" for n in names)
    text = str(exc)
    marker = "Unsupported global: "
    if marker in text:
        return text.split(marker, 1)[1].split(" was not", 1)[0]
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def _load_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    data = _read_bytes(path)
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({len(data)} bytes, shorter than its 8-byte header size)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if not data[8:9] == b"{":
        raise CheckpointError(f"{path}: not a safetensors file (no JSON header after the size; it starts with {data[:16]!r})")
    if 8 + header_len > len(data):
        raise CheckpointError(f"{path}: truncated safetensors file (header claims {header_len} bytes, "
                              f"file has {len(data) - 8} after the size)")
    try:
        header = json.loads(data[8:8 + header_len])
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from None
    if 8 + header_len + end > len(data):
        raise CheckpointError(f"{path}: truncated safetensors file (tensor data needs {end} bytes, "
                              f"file has {len(data) - 8 - header_len})")
    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from None
