"""Deep capture's per-op layer: tensor fingerprints and the TorchDispatchMode that records every ATen op.

Imported only by `deep`, which only runs when a deep step is asked for: nothing here costs anything otherwise.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import types
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from parity.capture import digest
from parity.trace import deep as ds

_TORCH_DIR = os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "")
_STDLIB_DIRS = tuple(os.path.join(d, "") for d in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")} if d)
_CAPTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
#: parity files that call the trainer's code (wrappers around optimizer.step, backward, framework loops):
#: ops beneath them are the trainer's; ops in every other capture file are parity's own bookkeeping.
_PASS_THROUGH = (os.path.join(_CAPTURE_DIR, "patches.py"), os.path.join(_CAPTURE_DIR, "frameworks", ""))
_ARGUMENTS_LIMIT = 400


#: Ops whose outputs hold whatever the allocator's memory held: never fingerprinted by value.
_UNINITIALISED_OPS = frozenset({"empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
                                "new_empty_strided", "resize_"})
UNINITIALISED = "<uninitialised>"


class PendingTensor:
    """A tensor's fingerprint whose device-side sums are launched; `resolve` after the batch's transfer."""

    __slots__ = ("pending", "values", "dtype", "shape", "fixed")

    def __init__(self, t: torch.Tensor, fixed: str | None = None) -> None:
        self.dtype, self.shape = str(t.dtype).replace("torch.", ""), tuple(t.shape)
        self.pending: digest.PendingDigest | None = None
        self.values: digest.HostCopy | None = None
        self.fixed = fixed
        if fixed is None and (t.layout != torch.strided or t.device.type == "meta" or t.is_quantized):
            self.fixed = f"<{t.layout} {t.device.type}>"  # no bytes to read: the kind stands in for them
        if self.fixed is not None:
            return
        t = t.detach()
        self.pending = digest.PendingDigest([t], weighted=True)
        if t.numel() and not t.is_complex():
            self.values = digest.HostCopy(_summary(t).view(torch.int64))

    def resolve(self) -> ds.TensorInfo:
        if self.pending is None:
            return ds.TensorInfo(self.fixed or "", self.dtype, self.shape)
        if self.values is None:
            return ds.TensorInfo(self.pending.value or "", self.dtype, self.shape)
        values = [digest.json_float(v) for v in self.values.value.view(torch.float64).tolist()]
        return ds.TensorInfo(self.pending.value or "", self.dtype, self.shape, values[0], values[1], tuple(values[2:]))


def _summary(t: torch.Tensor) -> torch.Tensor:
    """float64 [sum, abs-max, values at SAMPLE_SIZE evenly spaced positions], on the tensor's device."""
    flat = t.reshape(-1)
    if not flat.is_floating_point():
        flat = flat.to(torch.float64)
    n = flat.numel()
    m = min(n, ds.SAMPLE_SIZE)
    positions = torch.arange(m, device=flat.device, dtype=torch.int64) * n // m
    total = torch.sum(flat, dtype=torch.float64).reshape(1)
    absmax = flat.abs().max().to(torch.float64).reshape(1)
    return torch.cat([total, absmax, flat[positions].to(torch.float64)])


class ValueStandIn:
    """A non-tensor op result (`.item()`, a size): its repr is its fingerprint."""

    __slots__ = ("text", "kind")

    def __init__(self, value: object) -> None:
        # Objects (a profiler handle) by type only: their repr holds an address that differs between runs.
        plain = value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device))
        self.text, self.kind = repr(value) if plain else f"<{type(value).__name__}>", type(value).__name__

    def resolve(self) -> ds.TensorInfo:
        return ds.TensorInfo(digest.combine([self.text]), self.kind, ())


def resolve_batch(infos: list[PendingTensor | ValueStandIn]) -> None:
    """Bring a batch of fingerprints to the host with one transfer per device."""
    tensors = [i for i in infos if isinstance(i, PendingTensor)]
    digest.resolve_all([i.pending for i in tensors if i.pending is not None],
                       copies=[i.values for i in tensors if i.values is not None])


def fingerprints(values: Any, uninitialised: set[int] | frozenset[int] = frozenset()) -> list[PendingTensor | ValueStandIn]:
    """One fingerprint per tensor of a nested structure, in pytree order; tensors whose storage is in
    `uninitialised` (allocated by an empty op, not yet read) by that fact alone, not by their bytes."""
    leaves, _ = tree_flatten(values)
    return [PendingTensor(x, UNINITIALISED if uninitialised and _storage(x) in uninitialised else None)
            for x in leaves if isinstance(x, torch.Tensor)]


def _storage(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (subclasses, meta)
        return None


def _argument_text(args: tuple, kwargs: dict) -> str:
    """The call's non-tensor arguments as text (tensors as `T`); generators and objects by type only,
    since their repr holds addresses that differ between runs."""
    def show(x: Any) -> str:
        if isinstance(x, torch.Tensor):
            return "T"
        if isinstance(x, (list, tuple)):
            inner = ", ".join(show(v) for v in x)
            return f"[{inner}]" if isinstance(x, list) else f"({inner})"
        if x is None or isinstance(x, (bool, int, float, str, torch.dtype, torch.device, torch.layout, torch.memory_format)):
            return repr(x)
        return f"<{type(x).__name__}>"
    text = ", ".join([*(show(a) for a in args), *(f"{k}={show(v)}" for k, v in kwargs.items())])
    if len(text) > _ARGUMENTS_LIMIT:  # long lists of sizes: keep them comparable without writing them out
        text = f"{text[:_ARGUMENTS_LIMIT]}... #{digest.combine([text])}"
    return text


def _writes_arguments(func: Any) -> bool:
    """The op writes into one of its arguments (in place or out=), read from its schema: every torch
    version has the schema, while the `inplace` tag is missing from some."""
    schema = getattr(func, "_schema", None)
    return schema is not None and any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)


def _rng_state(func: Any, kwargs: dict) -> str | None:
    """Digest of the generator a random op draws from: part of its inputs, so dropout masks that differ
    because the RNG moved are not taken for a nondeterministic kernel."""
    if torch.Tag.nondeterministic_seeded not in getattr(func, "tags", ()):
        return None
    generator = kwargs.get("generator")
    if isinstance(generator, torch.Generator):
        state = generator.get_state()
    else:
        device = next((t.device for t in tree_flatten(kwargs)[0] if isinstance(t, torch.Tensor)), None)
        on_cuda = device is not None and device.type == "cuda"
        state = torch.cuda.get_rng_state(device) if on_cuda else torch.get_rng_state()
    return digest.digest_bytes(state.numpy().tobytes())


#: Op namespaces that compute nothing: profiler ranges (`record_function`, which DDP and the optimizers
#: open around their work), so a wrapped model's op stream is not "another op sequence" because of them.
_NOT_COMPUTE = frozenset({"profiler"})


class CallerLookup:
    """The nearest trainer source line of the running op, or None when parity itself runs the op."""

    def __init__(self) -> None:
        self._lines: dict[tuple[types.CodeType, int], str | None] = {}

    def find(self, frame: types.FrameType | None) -> str | None:
        while frame is not None:
            code = frame.f_code
            key = (code, frame.f_lineno)
            known = self._lines.get(key, False)
            if known is False:
                known = self._lines[key] = self._classify(code.co_filename, frame.f_lineno, code.co_name)
            if known != "":
                return None if known is None else known
            frame = frame.f_back
        return ""

    @staticmethod
    def _classify(filename: str, line: int, function: str) -> str | None:
        """"" to look further out (torch, the stdlib, parity's wrappers), None for parity's own code, else the line."""
        if filename.startswith("<") or filename.startswith(_TORCH_DIR):
            return ""
        if filename.startswith(_STDLIB_DIRS) and "-packages" not in filename:
            return ""
        if filename.startswith(_CAPTURE_DIR):
            return "" if filename.startswith(_PASS_THROUGH) else None
        if filename.startswith(os.getcwd()):
            shown = os.path.relpath(filename)
        else:  # an installed package: from its import name on, the same on every machine
            _, found, inside = filename.partition("-packages" + os.sep)
            shown = inside if found else filename
        return f"{shown}:{line} in {function}"


def current_phase(in_module: bool) -> str:
    if torch._C._current_graph_task_id() != -1:
        return ds.PHASE_BACKWARD
    return ds.PHASE_FORWARD if in_module or torch.is_grad_enabled() else ds.PHASE_NO_GRAD


class OpRecorder(TorchDispatchMode):
    """Records each ATen op the trainer dispatches: fingerprints of its tensor inputs (before it runs, so
    in-place ops show what they read), its arguments, RNG state and outputs; it never changes what runs.

    `emit(phase, module, name, inputs, outputs, arguments, rng, caller)` receives each op; `module()` says
    which module runs ("" the root, None outside modules). Ops launched by parity's own code are not recorded.
    """

    def __init__(self, emit: Callable[..., None], module: Callable[[], str | None]) -> None:
        super().__init__()
        self._emit = emit
        self._module = module
        self._pid = os.getpid()
        self._callers = CallerLookup()
        # Storages allocated by empty ops and not yet read by an op that does not write them: their bytes
        # are the allocator's leftovers until written (a dropout mask before bernoulli_, a buffer before copy_).
        self._uninitialised: set[int] = set()
        self.paused = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.paused or os.getpid() != self._pid or func.namespace in _NOT_COMPUTE:
            return func(*args, **kwargs)
        # f_back, not sys._getframe(1): on autograd's device threads no Python frame calls the op.
        caller = self._callers.find(sys._getframe(0).f_back)
        if caller is None:
            return func(*args, **kwargs)
        inputs = fingerprints((args, kwargs), self._uninitialised)
        rng = _rng_state(func, kwargs)
        out = func(*args, **kwargs)
        outputs = self._outputs(func, args, kwargs, out)
        module = self._module()
        self._emit(current_phase(module is not None), module, str(func), inputs, outputs,
                   _argument_text(args, kwargs), rng, caller)
        return out

    def _outputs(self, func: Any, args: tuple, kwargs: dict, out: Any) -> list[PendingTensor | ValueStandIn]:
        """The op's output fingerprints, keeping the set of uninitialised storages up to date."""
        tensors = [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)]
        if func.overloadpacket.__name__ in _UNINITIALISED_OPS:
            self._uninitialised.update(p for p in map(_storage, tensors) if p is not None)
            return [PendingTensor(t, UNINITIALISED) for t in tensors]
        writes = _writes_arguments(func) or "out" in kwargs
        if self._uninitialised and not writes:
            # Read by an op that does not write them: written by now. New outputs are fresh allocations,
            # whatever an earlier, freed tensor at the same address was.
            read = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
            fresh = tensors if not func.is_view else []
            self._uninitialised.difference_update(_storage(t) for t in [*read, *fresh])
        outputs: list[PendingTensor | ValueStandIn] = fingerprints(out)
        if not isinstance(out, (torch.Tensor, list, tuple)) and out is not None:
            outputs.append(ValueStandIn(out))
        return outputs
