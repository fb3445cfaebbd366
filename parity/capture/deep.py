"""Deep capture: one chosen step recorded module by module and ATen op by ATen op (`parity locate`).

Armed by PARITY_DEEP_STEP only. It installs nothing until the step before the chosen one has finished its
optimizer update (step 0: until the first grad-enabled forward), and removes everything after the chosen
step's update, so the steps it does not capture run exactly as under plain recording.
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.autograd.graph import register_multi_grad_hook
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._pytree import tree_flatten

from parity.capture import config as cfg
from parity.capture.deep_ops import OpRecorder, PendingTensor, fingerprints, resolve_batch
from parity.capture.recorder import Recorder, dynamo_tracing
from parity.capture.structure import unwrapped_name
from parity.trace import deep as ds
from parity.trace import schema
from parity.trace.writer import encode_record

#: Records held before their fingerprints are brought to the host and written (bounds memory and syncs).
_BATCH = 256


def _grad_tensors(values: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(values)
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]


class _Call:
    """One module call: its name and input fingerprints; in backward, its gradient-output fingerprints."""

    __slots__ = ("name", "depth", "inputs", "grad_outputs", "grad_input_ids", "passthrough", "alias")

    def __init__(self, name: str, depth: int, inputs: list) -> None:
        self.name, self.depth, self.inputs, self.grad_outputs = name, depth, inputs, []
        # ids of the inputs that need gradients, while the forward runs (they are alive until it returns)
        self.grad_input_ids: set[int] = set()
        # The call returned its own input (dropout with p=0, identity): it has no backward of its own, and
        # its gradient hooks would see its "end" before its "start".
        self.passthrough = False
        # A wrapper's wrapped module (torch.compile's _orig_mod, DDP's module): the same name as the call
        # around it, so it records nothing of its own and a wrapped model's records match an unwrapped one's.
        self.alias = False


class DeepCapture:
    """Records step `step` into deep-rank<N>.jsonl beside the trace.

    Contract: it never changes what the trainer computes (hooks only read tensors; the dispatch mode calls
    each op once with its own arguments) and never raises into it (failures go through the recorder's
    capture_failed). It writes nothing from forked children.
    """

    def __init__(self, recorder: Recorder, step: int, exit_after: bool = False) -> None:
        self.recorder = recorder
        self.step = step
        self.exit_after = exit_after
        self.path = Path(recorder.directory) / ds.DEEP_FILE_PATTERN.format(rank=recorder.rank)
        self._names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._forward: list[_Call] = []
        self._backward: list[_Call] = []
        self._handles: list[Any] = []
        self._arming_handle: Any = None
        self._mode: OpRecorder | None = None
        self._held: list[tuple[dict, list]] = []
        self._seq = 0
        self._file: Any = None
        self._engine_callback = False
        self.done = False

    # -- lifecycle ---------------------------------------------------------------------------
    def install(self) -> "DeepCapture":
        self.recorder.update_listeners.append(self._on_update)
        if self.step == 0:
            self._arming_handle = register_module_forward_pre_hook(self._arm_at_first_forward)
        return self

    @property
    def armed(self) -> bool:
        return self._mode is not None

    def _arm_at_first_forward(self, module: torch.nn.Module, args: Any) -> None:
        if self.armed or self.done or dynamo_tracing() or not torch.is_grad_enabled() \
                or torch._C._current_graph_task_id() != -1 or os.getpid() != self.recorder.pid:
            return
        self._guarded(lambda: self._arm_for_root(module, args))

    def _arm_for_root(self, module: torch.nn.Module, args: Any) -> None:
        self._arming_handle.remove()
        self._arming_handle = None
        named = [(unwrapped_name(n), p) for n, p in module.named_parameters()]
        self._arm([p for _, p in named], [n for n, _ in named])
        self._forward_pre(module, args)  # this call's hooks were gathered before ours existed

    def _on_update(self, step: int, params: list[torch.Tensor], names: list[str]) -> None:
        if self.armed and step == self.step:
            self._disarm(complete=True)
            if self.exit_after:
                # Nothing after this step is needed: end the trainer without running its remaining steps, its
                # trace closed first so that it holds every step up to this one (compared if re-runs diverge early).
                self.recorder.close(schema.END_OK, f"stopped after step {step}, deep-captured")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
        elif not self.armed and not self.done and step == self.step - 1:
            self._arm(params, names)

    def close(self) -> None:
        """The process ends: write what was captured (without an end record if the step never finished)."""
        if self._arming_handle is not None:
            self._arming_handle.remove()
            self._arming_handle = None
        if self.armed:
            self._disarm(complete=False)

    def _arm(self, params: list[torch.Tensor], names: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")
        self._file.write(encode_record({"type": ds.TYPE_HEADER, "version": ds.DEEP_VERSION, "step": self.step,
                                        "rank": self.recorder.rank, "pid": os.getpid()}) + "\n")
        for name, p in zip(names, params):
            self._emit(ds.KIND_STATE, ds.PHASE_START, None, name, [], [PendingTensor(p)])
            if p.requires_grad:
                self._handles.append(p.register_hook(functools.partial(self._on_param_grad, name)))
        self._handles += [register_module_forward_pre_hook(self._forward_pre),
                          register_module_forward_hook(self._forward_post, always_call=True)]
        self._mode = OpRecorder(self._on_op, self._current_module)
        self._mode.__enter__()

    def _disarm(self, complete: bool) -> None:
        mode, self._mode = self._mode, None
        mode.__exit__(None, None, None)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._forward.clear()
        self._backward.clear()
        self._flush()
        if complete:
            self._file.write(encode_record({"type": ds.TYPE_END, "records": self._seq}) + "\n")
        self._file.close()
        self.done = True

    # -- records -----------------------------------------------------------------------------
    def _emit(self, kind: str, phase: str, module: str | None, name: str, inputs: list, outputs: list,
              arguments: str = "", rng: str | None = None, caller: str = "") -> None:
        fields = {"seq": self._seq, "kind": kind, "phase": phase, "module": module, "name": name,
                  "arguments": arguments, "rng": rng, "caller": caller}
        self._seq += 1
        self._held.append((fields, [inputs, outputs]))
        if len(self._held) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        held, self._held = self._held, []
        paused = self._pause()
        try:
            resolve_batch([info for _, parts in held for part in parts for info in part])
            for fields, (inputs, outputs) in held:
                record = ds.DeepRecord(inputs=tuple(i.resolve() for i in inputs),
                                       outputs=tuple(o.resolve() for o in outputs), **fields)
                self._file.write(encode_record({"type": ds.TYPE_RECORD, "record": record.to_json()}) + "\n")
        finally:
            self._resume(paused)

    def _pause(self) -> bool:
        was = self._mode is not None and self._mode.paused
        if self._mode is not None:
            self._mode.paused = True
        return was

    def _resume(self, was: bool) -> None:
        if self._mode is not None:
            self._mode.paused = was

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Run capture code with op recording paused; a failure is noted in the trace, never raised."""
        paused = self._pause()
        try:
            fn(*args)
        except Exception:
            self.recorder.capture_failed("deep capture")
        finally:
            self._resume(paused)

    def _on_op(self, phase: str, module: str | None, name: str, inputs: list, outputs: list, arguments: str,
               rng: str | None, caller: str) -> None:
        self._guarded(self._emit, ds.KIND_OP, phase, module, name, inputs, outputs, arguments, rng, caller)

    def _on_param_grad(self, name: str, grad: torch.Tensor) -> None:
        if self.armed:
            self._guarded(lambda: self._emit(ds.KIND_GRAD, ds.PHASE_BACKWARD, self._current_module(), name, [],
                                             [PendingTensor(grad)]))

    # -- modules -----------------------------------------------------------------------------
    def _name(self, module: torch.nn.Module) -> str:
        known = self._names.get(module)
        if known is not None:
            return known
        if not self._forward:  # a root: name its whole tree as state_dict does, without wrapper segments
            for name, sub in module.named_modules(remove_duplicate=False):
                self._names.setdefault(sub, unwrapped_name(name))
            return self._names[module]
        name = f"{self._forward[-1].name}.<{type(module).__name__}>".lstrip(".")
        self._names[module] = name
        return name

    def _current_module(self) -> str | None:
        if torch._C._current_graph_task_id() != -1:
            # A module and its last submodule enter backward together (one output tensor): the deepest
            # module whose backward has begun and not ended is the one running.
            return max(reversed(self._backward), key=lambda c: c.depth).name if self._backward else None
        return self._forward[-1].name if self._forward else None

    def _forward_pre(self, module: torch.nn.Module, args: Any) -> None:
        if not self.armed or dynamo_tracing() or os.getpid() != self.recorder.pid:
            return
        self._guarded(self._enter_forward, module, args)

    def _enter_forward(self, module: torch.nn.Module, args: Any) -> None:
        name = self._name(module)
        call = _Call(name, len(self._forward), fingerprints(args))
        call.alias = bool(self._forward) and self._forward[-1].name == name
        self._forward.append(call)
        needs_grad = _grad_tensors(args)
        if needs_grad and torch.is_grad_enabled() and not call.alias:
            call.grad_input_ids = {id(t) for t in needs_grad}
            self._handles.append(register_multi_grad_hook(needs_grad, functools.partial(self._leave_backward, call)))

    def _forward_post(self, module: torch.nn.Module, args: Any, output: Any = None) -> None:
        if not self.armed or dynamo_tracing() or os.getpid() != self.recorder.pid or not self._forward:
            return
        self._guarded(self._leave_forward, output)

    def _leave_forward(self, output: Any) -> None:
        call = self._forward.pop()
        if call.alias:
            return
        self._emit(ds.KIND_MODULE, ds.PHASE_FORWARD, call.name, "", call.inputs, fingerprints(output))
        needs_grad = _grad_tensors(output)
        if needs_grad and all(id(t) in call.grad_input_ids for t in needs_grad):
            call.passthrough = True
            needs_grad = []
        call.grad_input_ids = set()
        if needs_grad and torch.is_grad_enabled():
            self._handles.append(register_multi_grad_hook(needs_grad, functools.partial(self._enter_backward, call)))

    def _enter_backward(self, call: _Call, grads: Any) -> None:
        if not self.armed:
            return

        def enter() -> None:
            call.grad_outputs = [PendingTensor(g) for g in grads if g is not None]
            self._backward.append(call)
            if not self._engine_callback:
                # Modules whose inputs need no gradient (the first layer) never see their backward end:
                # the engine's end of this backward closes them all.
                torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)
                self._engine_callback = True
        self._guarded(enter)

    def _backward_done(self) -> None:
        self._backward.clear()
        self._engine_callback = False

    def _leave_backward(self, call: _Call, grads: Any) -> None:
        if not self.armed or call.passthrough:
            return

        def leave() -> None:
            grad_inputs = [PendingTensor(g) for g in grads if g is not None]
            self._emit(ds.KIND_MODULE, ds.PHASE_BACKWARD, call.name, "", call.grad_outputs, grad_inputs)
            if call in self._backward:
                self._backward.remove(call)
        self._guarded(leave)


def from_environment(recorder: Recorder) -> DeepCapture | None:
    """The deep capture PARITY_DEEP_STEP asks for, installed; None (nothing installed) when it is unset."""
    step = os.environ.get(cfg.ENV_DEEP_STEP)
    if not step:
        return None
    return DeepCapture(recorder, int(step), exit_after=os.environ.get(cfg.ENV_DEEP_EXIT) == "1").install()


__all__ = ["DeepCapture", "from_environment"]
