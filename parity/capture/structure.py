"""Model structure at the first update: module tree, parameter and buffer shapes, dtypes and trainability."""

from __future__ import annotations

import re

import inspect
import types
import weakref
from typing import Any, Iterable

import torch


#: Wrappers that hold the model as `.module` and add nothing to it (named, so torch.distributed is not imported).
_MODULE_WRAPPERS = frozenset({"DistributedDataParallel", "DataParallel"})
#: Name segments those wrappers and torch.compile's OptimizedModule (`_orig_mod`) add to every name inside.
WRAPPER_SEGMENTS = frozenset({"module", "_orig_mod"})


def unwrapped_name(name: str) -> str:
    """A module or parameter name without wrapper segments: the same for a model and its DDP/compiled wrapper."""
    return ".".join(part for part in name.split(".") if part not in WRAPPER_SEGMENTS)


def unwrap_model(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside its wrappers (torch.compile's OptimizedModule, DDP, DataParallel, in any nesting),
    so that a compiled or distributed run describes its model as the plain run does."""
    while True:
        inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module) and type(module).__name__ in _MODULE_WRAPPERS:
            inner = getattr(module, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return module
        module = inner


def class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")



#: Object addresses in a module's extra_repr (a custom callable) change every run; they are not settings.
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _settings(module: torch.nn.Module) -> str:
    """The module's own settings as it prints them (Dropout p, LayerNorm eps, Linear bias...): a fork
    that changes dropout from 0.1 to 0.2 changes no parameter, but this string."""
    try:
        return _ADDRESS.sub("", module.extra_repr())[:200]
    except Exception:  # a custom extra_repr that fails must not break capture
        return ""

def describe_module(module: torch.nn.Module) -> dict[str, Any]:
    """One root module as the META_MODEL schema entry (names relative to the root)."""
    module = unwrap_model(module)
    params = list(module.named_parameters())
    return {
        "class": class_path(module),
        "modules": [[name, type(m).__name__, _settings(m)] for name, m in module.named_modules()],
        "params": [[name, list(p.shape), _dtype_name(p), bool(p.requires_grad)] for name, p in params],
        "buffers": [[name, list(b.shape), _dtype_name(b)] for name, b in module.named_buffers()],
        "n_params": sum(p.numel() for _, p in params),
        "n_trainable": sum(p.numel() for _, p in params if p.requires_grad),
    }


def describe_model(roots: Iterable[torch.nn.Module], optimizer_params: Iterable[torch.Tensor]) -> dict[str, Any]:
    """META_MODEL: every root seen in a grad-enabled forward, plus optimizer params no root owns.

    With no root seen before the first update, the optimizer's parameters are all there is to describe.
    """
    described = [describe_module(root) for root in roots]
    owned = {id(p) for root in roots for p in root.parameters()}
    orphans = [[list(p.shape), _dtype_name(p), bool(p.requires_grad)] for p in optimizer_params if id(p) not in owned]
    return {"roots": described, "optimizer_only": orphans}


#: At most this many eval-mode submodule names per step record; `n_eval` still counts them all.
MAX_EVAL_NAMES = 20


def training_mode(module: torch.nn.Module) -> dict[str, Any]:
    """F_MODE: the root's training flag and the submodules left in eval mode (dropout, batch-norm off)."""
    module = unwrap_model(module)
    in_eval = [name for name, m in module.named_modules() if name and not m.training]
    return {"root": type(module).__name__, "training": bool(module.training),
            "eval_modules": in_eval[:MAX_EVAL_NAMES], "n_eval": len(in_eval)}


#: Frames searched above a root-level forward hook for a `forward` the trainer called directly.
MAX_STACK_FRAMES = 20


class EnclosingForwards:
    """Finds the model a trainer ran as `model.forward(x)`, a call that fires no hook of the model's own.

    Its submodules' hooks then fire at root level; the model is the `self` of a `forward` frame up the
    stack whose module contains the submodule (the outermost such frame). Modules are held weakly.
    """

    def __init__(self) -> None:
        self._members: dict[int, tuple[weakref.ref, frozenset[int]]] = {}

    def _contains(self, owner: torch.nn.Module, module: torch.nn.Module) -> bool:
        known = self._members.get(id(owner))
        if known is not None and known[0]() is owner and id(module) in known[1]:
            return True
        # Recomputed on a miss: the model may have gained modules since it was last seen.
        members = frozenset(id(m) for m in owner.modules())
        self._members[id(owner)] = (weakref.ref(owner), members)
        return id(module) in members

    def find(self, module: torch.nn.Module, start: types.FrameType | None) -> types.FrameType | None:
        """The outermost enclosing `forward` frame of a module containing `module`, or None."""
        found = None
        frame = start
        for _ in range(MAX_STACK_FRAMES):
            if frame is None:
                break
            code = frame.f_code
            if code.co_name == "forward" and code.co_argcount >= 1:
                owner = frame.f_locals.get(code.co_varnames[0])
                if isinstance(owner, torch.nn.Module) and owner is not module and self._contains(owner, module):
                    found = frame
            frame = frame.f_back
        return found


def forward_owner(frame: types.FrameType) -> torch.nn.Module:
    return frame.f_locals[frame.f_code.co_varnames[0]]


def forward_arguments(frame: types.FrameType) -> list[Any]:
    """The values of a `forward` frame's parameters (self excluded), *args and **kwargs included, in order."""
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount
    names = list(code.co_varnames[1:count])
    if code.co_flags & inspect.CO_VARARGS:
        names.append(code.co_varnames[count])
        count += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        names.append(code.co_varnames[count])
    local_vars = frame.f_locals
    return [local_vars.get(name) for name in names]
