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
PLAIN_PICKLE_SUFFIXES = (".pkl", ".pickle")
"""Suffixes of a directory's files that are sniffed and loaded (besides PICKLE_SUFFIXES and no suffix at all)."""

#: Files of a checkpoint directory that hold run configuration, not state. Trainers (Hugging Face's
#: `training_args.bin`) pickle whole argument objects into them, so an unsafe one is recorded, not fatal.
CONFIG_FILES = frozenset({"training_args.bin", "args.bin", "hparams.bin", "config.bin"})

UNSAFE_CONFIG_NOTE = "config present, not loaded (unsafe pickle)"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80
_SNIFF_BYTES = 64
_MAX_SAFETENSORS_HEADER = 100_000_000
"""safetensors refuses larger headers; a bigger size in the first 8 bytes means the file is something else."""
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The integer torch's pre-zip format pickles first (`torch.serialization.MAGIC_NUMBER`)."""
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
    """"torch", "pickle" (a plain pickle, not torch's format), "safetensors", "json", or "other" for files a
    checkpoint directory may hold but the audit skips."""
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
    """"torch", "pickle", "safetensors", "json" or "directory"."""
    tree: Any
    files: list[FileEntry] = field(default_factory=list)
    trusted: bool = False

    @property
    def name(self) -> str:
        return str(self.path)


def load_checkpoint(path: str | Path, *, trust: bool = False) -> LoadedCheckpoint:
    """Load a torch checkpoint, a plain pickle, a safetensors or JSON file, or a directory of them.

    A file's format is sniffed from its bytes (`sniff_format`), so a suffix-less or misnamed file loads;
    the suffix only chooses the error message for a file that matches no format. Pickles load with
    `weights_only` rules (plain numpy arrays allowed, as RNG states hold them); one that needs more raises
    CheckpointError unless `trust` is True. Missing, empty, truncated and foreign files raise
    CheckpointError naming the path and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    if path.is_dir():
        return _load_directory(path, trust)
    fmt = sniff_format(path) or _format_from_suffix(path.suffix.lower())
    if fmt is None:
        raise CheckpointError(f"{path}: not a checkpoint (neither a torch zip archive, a pickle, a safetensors "
                              f"file nor JSON; it starts with {_read_bytes(path)[:16]!r})")
    tree = _load_file(path, fmt, trust)
    kind = "torch" if fmt == "torch" and not _is_plain_pickle(path) else ("pickle" if fmt == "torch" else fmt)
    return LoadedCheckpoint(path, kind, tree, [FileEntry(path.name, kind, "loaded")], trust)


def sniff_format(path: Path) -> str | None:
    """"torch", "safetensors" or "json" from the file's first bytes, or None when none of them matches.

    torch covers every pickle (the zip format with a `data.pkl` member, the legacy format, a plain
    pickle): `_load_pickle` tells them apart. An empty or unreadable file sniffs as None.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return None
    if head.startswith(_ZIP_MAGIC):
        return "torch" if _zip_holds_pickle(path) or not zipfile.is_zipfile(path) else None
    if head[:1] == bytes([_PICKLE_PROTO]):
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= _MAX_SAFETENSORS_HEADER:
        return "safetensors"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return None


def _zip_holds_pickle(path: Path) -> bool:
    """torch's zip format: one top folder holding `data.pkl`. A cut archive is left to the loader to name."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _format_from_suffix(suffix: str) -> str | None:
    if suffix in PICKLE_SUFFIXES or suffix in PLAIN_PICKLE_SUFFIXES:
        return "torch"
    return {SAFETENSORS_SUFFIX: "safetensors", JSON_SUFFIX: "json"}.get(suffix)


def _load_file(path: Path, fmt: str, trust: bool) -> Any:
    if fmt == "torch":
        return _load_pickle(path, trust)
    if fmt == "safetensors":
        return _load_safetensors(path)
    return _load_json(path)


def _load_directory(path: Path, trust: bool) -> LoadedCheckpoint:
    tree: dict[str, Any] = {}
    files: list[FileEntry] = []
    subdirs: list[str] = []
    for child in sorted(path.iterdir()):
        if child.is_dir():
            subdirs.append(child.name)
            continue
        suffix = child.suffix.lower()
        known = _format_from_suffix(suffix)
        # Suffix-less files are sniffed (DeepSpeed's `latest` is text and stays ignored); others keep their suffix's meaning.
        fmt = (sniff_format(child) or known) if known or not suffix else None
        if fmt is None:
            files.append(FileEntry(child.name, "other", "ignored"))
            continue
        kind = "pickle" if fmt == "torch" and _is_plain_pickle(child) else fmt
        try:
            tree[child.name] = _load_file(child, fmt, trust)
            files.append(FileEntry(child.name, kind, "loaded"))
        except _UnsafePickle:
            if child.name not in CONFIG_FILES:
                raise
            tree[child.name] = Unloaded(child.name, UNSAFE_CONFIG_NOTE)
            files.append(FileEntry(child.name, kind, "not loaded (unsafe pickle)"))
    if not any(f.format in ("torch", "pickle", "safetensors") for f in files):
        hint = f"; it holds directories {', '.join(subdirs[:5])}: audit one of those" if subdirs else ""
        raise CheckpointError(f"{path}: no checkpoint files in this directory (no torch, pickle or safetensors "
                              f"file){hint}")
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
        if not _is_legacy_torch(data):
            return _load_plain_pickle(path, data, trust)
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


def _is_plain_pickle(path: Path) -> bool:
    """A pickle written by `pickle.dump`, not `torch.save`: neither a zip archive nor torch's legacy format."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return data[:1] == bytes([_PICKLE_PROTO]) and not _is_legacy_torch(data)


def _is_legacy_torch(data: bytes) -> bool:
    """torch's pre-zip format opens with a pickle of one integer, its magic number; a plain pickle does not."""
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("PROTO", "FRAME"):
                continue
            return opcode.name in ("LONG1", "LONG4", "LONG", "INT") and arg == _TORCH_LEGACY_MAGIC
    except (ValueError, struct.error, UnicodeDecodeError):
        return False
    return False


def _load_plain_pickle(path: Path, data: bytes, trust: bool) -> Any:
    """A `pickle.dump` file, allowed the same globals as a torch file under `weights_only` (plus numpy arrays).

    torch.load cannot read one (it expects its own framing), and torch's restricted unpickler knows only
    protocol 2, so a stdlib unpickler whose `find_class` answers from torch's allowlist reads it. Tensors
    pickled this way hold torch.save bytes, which `_load_tensor_bytes` reads under the same rules.
    """
    if trust:
        try:
            return pickle.loads(data)  # noqa: S301 -- the user vouched for this file with --trust-checkpoint
        except Exception as exc:  # an arbitrary pickle can raise anything while rebuilding  # noqa: BLE001
            raise CheckpointError(f"{path}: plain pickle (not a torch checkpoint) does not load "
                                  f"({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except _RefusedGlobal as exc:
        raise _UnsafePickle(f"{path}: plain pickle (not a torch checkpoint) that needs an unsafe load (it contains "
                            f"GLOBAL {exc}); re-run with --trust-checkpoint only if you trust its source") from None
    except (pickle.UnpicklingError, EOFError, ValueError, struct.error, UnicodeDecodeError, IndexError, KeyError,
            TypeError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt plain pickle (not a torch checkpoint; "
                              f"{type(exc).__name__}: {_first_line(exc)})") from None


class _RefusedGlobal(pickle.UnpicklingError):
    """A global outside the weights-only allowlist; its message is the global's dotted name."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals torch's `weights_only` load allows; never imports anything else."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, encoding="utf-8")
        self._allowed = _weights_only_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get(f"{module}.{name}")
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"persistent id {pid!r} in a plain pickle")


def _weights_only_globals() -> dict[str, Any]:
    """Dotted name -> object for what `torch.load(weights_only=True)` may rebuild, plus numpy arrays.

    torch keeps this list private; without it only plain Python values (and numpy arrays) load.
    """
    import torch

    try:
        from torch._weights_only_unpickler import _get_allowed_globals, _get_user_allowed_globals

        allowed = {**_get_allowed_globals(), **_get_user_allowed_globals()}
    except (ImportError, AttributeError):
        allowed = {}
    allowed.update({f"{g.__module__}.{g.__qualname__}": g for g in _numpy_globals()})
    allowed["torch.storage._load_from_bytes"] = _load_tensor_bytes
    allowed["torch.Size"] = torch.Size
    return allowed


def _load_tensor_bytes(data: bytes) -> Any:
    """What `torch.storage._load_from_bytes` does for a pickled tensor, but with weights_only=True."""
    import torch

    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
