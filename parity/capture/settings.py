"""Config objects found without edits: config dicts, dataclasses, namespaces, OmegaConf and TrainingArguments.

Searched once, at the first optimizer update, in the `__main__` globals, the globals of the modules
whose functions are on the call stack, and the locals (and `self` attributes) of the trainer's frames
that led to the update, outermost first. Nothing here imports a package the trainer did not import, and nothing raises.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import itertools
import os
import re
import sys
import sysconfig
import types
from pathlib import PurePath
from typing import Any, Iterator

from parity.trace import schema

#: An object with more leaves than this is data, not configuration: skipped.
MAX_LEAVES = 2000
#: Frames walked outward from the optimizer step.
MAX_FRAMES = 64

#: Name endings a plain dict must have to count as configuration (`cfg`, `model_config`), unless it is
#: UPPER_CASE like a module constant.
_DICT_NAMES = ("config", "cfg", "conf", "hparams", "hyperparams", "params", "args", "settings", "opts", "options")
_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


class _NotConfig(Exception):
    """The object holds something that is not plain configuration (a tensor, a model, a file handle)."""


def library_dirs() -> tuple[str, ...]:
    """Directory prefixes of the stdlib, torch and parity, each both as given and with links resolved."""
    import torch

    paths = sysconfig.get_paths()
    dirs = {paths.get("stdlib"), paths.get("platstdlib"), os.path.dirname(torch.__file__),
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    found = {os.path.join(resolve(d), "") for d in dirs if d for resolve in (os.path.abspath, os.path.realpath)}
    return tuple(found)


def _is_library_path(path: str, dirs: tuple[str, ...]) -> bool:
    return (f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path
            or path.startswith(dirs))


def is_library_file(filename: str, dirs: tuple[str, ...]) -> bool:
    """Stdlib, site-packages, torch, parity itself, or code without a file (<frozen ...>, <string>)."""
    if not filename or filename.startswith("<"):
        return True
    # The unresolved path decides almost every module; only the rest pay for resolving links.
    return _is_library_path(os.path.abspath(filename), dirs) or _is_library_path(os.path.realpath(filename), dirs)


class _Leaves:
    """Converts a value to JSON, counting leaves so that oversized objects are refused early."""

    def __init__(self) -> None:
        self.count = 0

    def convert(self, value: Any, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_LEAVES or depth > 20:
            raise _NotConfig("too large")
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        if isinstance(value, (PurePath, enum.Enum)):
            return str(value)
        if type(value).__module__ == "torch" and type(value).__name__ in ("dtype", "device"):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [self.convert(v, depth + 1) for v in value]
        if isinstance(value, dict):
            if not all(isinstance(k, (str, int)) for k in value):
                raise _NotConfig("non-string keys")
            return {str(k): self.convert(v, depth + 1) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            # Field by field, not dataclasses.asdict: asdict deep-copies, which a field holding a model
            # or a tensor would make expensive before it is refused anyway.
            return {f.name: self.convert(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
        if isinstance(value, (argparse.Namespace, types.SimpleNamespace)):
            return self.convert(vars(value), depth + 1)
        raise _NotConfig(type(value).__name__)


def _omegaconf_container(value: Any) -> Any:
    omegaconf = sys.modules.get("omegaconf")
    if omegaconf is None or not isinstance(value, getattr(omegaconf, "DictConfig", ())):
        return None
    try:
        return omegaconf.OmegaConf.to_container(value, resolve=True)
    except Exception:  # an unresolvable interpolation: the raw values still say what was configured
        return omegaconf.OmegaConf.to_container(value, resolve=False)


def _is_training_arguments(value: Any) -> bool:
    return any(c.__name__ == "TrainingArguments" for c in type(value).__mro__) and callable(getattr(value, "to_dict", None))


def config_value(name: str, value: Any) -> Any:
    """The JSON form of `value` if it is configuration by type (and, for plain dicts, by name); else None."""
    if isinstance(value, type) or isinstance(value, types.ModuleType):
        return None
    try:
        if isinstance(value, dict):
            if type(value) is not dict or not value or not (name.lower().endswith(_DICT_NAMES) or _UPPER.match(name)):
                return None
            if not all(isinstance(k, str) for k in value):
                return None
            return _Leaves().convert(value)
        container = _omegaconf_container(value)
        if container is not None:
            return _Leaves().convert(container)
        if _is_training_arguments(value):
            return _Leaves().convert(value.to_dict())
        if (dataclasses.is_dataclass(value) or isinstance(value, (argparse.Namespace, types.SimpleNamespace))):
            return _Leaves().convert(value)
    except _NotConfig:
        return None
    except Exception:  # a foreign object misbehaving under inspection is simply not config
        return None
    return None


def _frames(start: types.FrameType | None) -> Iterator[types.FrameType]:
    frame = start
    for _ in range(MAX_FRAMES):
        if frame is None:
            return
        yield frame
        frame = frame.f_back


def _candidates(start: types.FrameType | None) -> Iterator[tuple[str, str, Any]]:
    """(where, variable name, value), in the order that names an object found twice."""
    library = library_dirs()
    trainer_frames = [f for f in _frames(start) if not is_library_file(f.f_code.co_filename, library)]
    main = sys.modules.get("__main__")
    scanned: set[int] = set()
    namespaces = [vars(main)] if main is not None else []
    namespaces += [f.f_globals for f in trainer_frames]
    for namespace in namespaces:
        if id(namespace) in scanned:
            continue
        scanned.add(id(namespace))
        module = namespace.get("__name__", "?")
        for name, value in list(namespace.items()):
            if not name.startswith("__"):
                yield f"{module}.{name}", name, value
    # Outermost frames first: `main:args` names the config whichever method a fork overrides to
    # reach the update, so the same config keeps its name across a pair of runs.
    for frame in reversed(trainer_frames):
        function = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
        local_vars = dict(frame.f_locals)
        for name, value in local_vars.items():
            yield f"{function}:{name}", name, value
        owner = local_vars.get("self")
        attributes = getattr(owner, "__dict__", None) if owner is not None else None
        if isinstance(attributes, dict):
            for name, value in list(attributes.items()):
                yield f"{function}:self.{name}", name, value


def find_config_objects(start: types.FrameType | None = None, named: dict[str, Any] | None = None) -> dict[str, Any]:
    """META_CONFIG_OBJECTS: {where: value}; one entry per object, named where it was first found.

    `named` ({where: object}, from framework shims) come first: a framework's config keeps the
    framework's name whatever variable the trainer holds it in.
    """
    if start is None:
        start = sys._getframe(1)
    found: dict[str, Any] = {}
    seen: set[int] = set()
    for where, name, value in itertools.chain(((w, w, v) for w, v in (named or {}).items()), _candidates(start)):
        if id(value) in seen:
            continue
        converted = config_value(name, value)
        if converted is not None:
            seen.add(id(value))
            found[where] = converted
    return found


#: argparse's own action classes, by the kind the trace names them.
_ACTION_KINDS = {"_StoreAction": schema.ACTION_STORE, "_StoreTrueAction": schema.ACTION_STORE_TRUE,
                 "_StoreFalseAction": schema.ACTION_STORE_FALSE, "_StoreConstAction": schema.ACTION_STORE_CONST,
                 "BooleanOptionalAction": schema.ACTION_BOOLEAN_OPTIONAL, "_AppendAction": schema.ACTION_APPEND,
                 "_CountAction": schema.ACTION_COUNT}


def argparse_options(parser: argparse.ArgumentParser) -> dict[str, list[dict[str, Any]]]:
    """How each dest of `parser` is set on a command line (schema.META_ARGPARSE_OPTIONS).

    Help and version actions write no dest and are left out; values are passed through as they are (the
    recorder makes them JSON)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for action in getattr(parser, "_actions", ()):
        if action.dest in (None, argparse.SUPPRESS) or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        kind = _ACTION_KINDS.get(type(action).__name__, type(action).__name__)
        default = None if action.default is argparse.SUPPRESS else action.default
        out.setdefault(action.dest, []).append({schema.ARG_OPTIONS: list(action.option_strings), schema.ARG_ACTION: kind,
                                                schema.ARG_NARGS: action.nargs, schema.ARG_DEFAULT: default,
                                                schema.ARG_CONST: action.const})
    return out
