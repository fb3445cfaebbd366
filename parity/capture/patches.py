"""Global torch instrumentation: step hooks, module hooks and thin wrappers, all removable.

Every wrapper calls the original exactly once with the original arguments and returns its result;
recording happens around it and never raises into the trainer (see Recorder.capture_failed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import sys
import types
import weakref
from typing import Any, Callable, Iterator

import torch
from torch.optim import lr_scheduler

from parity.capture.controls import rng_restore_targets
from parity.capture import structure
from parity.capture.settings import argparse_options
from parity.capture.frameworks import ShimFinder, install_shims
from parity.capture.recorder import IS_COMPILING, Recorder, dynamo_tracing, iter_tensors
from parity.trace import schema


def _scheduler_classes() -> list[type]:
    return [c for c in vars(lr_scheduler).values() if inspect.isclass(c) and issubclass(c, lr_scheduler.LRScheduler)]


def _data_tensors(values: Any) -> list[torch.Tensor]:
    """Only tensors that do not require grad are data: a root-level loss module also receives the
    model's outputs, which depend on the parameters, not on the batch."""
    return [t for t in iter_tensors(values) if not t.requires_grad]


def _in_autograd_backward() -> bool:
    """True while the autograd engine runs a backward (on any of its threads)."""
    task = getattr(torch._C, "_current_graph_task_id", None)
    return task is not None and task() != -1


def _root_name(module: torch.nn.Module) -> str:
    return type(structure.unwrap_model(module)).__name__


class _Catalogue:
    """The objects of one kind a trace describes (a META_* list: optimizers, schedulers, loaders), each
    once, in the order first seen; held weakly, so describing an object never keeps it alive."""

    def __init__(self, recorder: Recorder, key: str, *, open_trace: bool = False) -> None:
        self._recorder, self._key, self._open_trace = recorder, key, open_trace
        self._entries: list[dict[str, Any]] = []
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def __contains__(self, obj: Any) -> bool:
        return obj in self._seen

    def add(self, obj: Any, entry: dict[str, Any]) -> None:
        """Describe `obj`: the whole list is written again (a meta record holds its latest value)."""
        self._seen.add(obj)
        self._entries.append(entry)
        self._recorder.meta(self._key, self._entries, open_trace=self._open_trace)


class TorchPatches:
    """Installs parity's hooks and wrappers into torch; `uninstall()` restores every original.

    It never changes what a wrapped call computes. Nested calls (Tensor.backward calling
    torch.autograd.backward, SequentialLR stepping its children, submodules' forwards) are recorded
    once, at the outermost call.
    """

    def __init__(self, recorder: Recorder, skip_loads: frozenset[str] = frozenset()) -> None:
        self.recorder = recorder
        self.skip_loads = skip_loads
        self._originals: list[tuple[Any, str, Any, bool]] = []
        self._handles: list[Any] = []
        self._depth: dict[str, int] = {}
        # Module calls under way (an attribute, not a `_depth` key: both hooks run for every module call).
        self._forward_depth = 0
        self._scaled: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._in_scaler_step = False
        self._scaler_updated = False
        self._args: dict[str, Any] = {}
        self._arg_options: dict[str, list[dict[str, Any]]] = {}
        self._skipped_calls: list[str] = []
        # Described at construction; one made before capture started (`with parity.record(...)` around the
        # loop only) at its first use instead: update, scheduler step, epoch.
        self._optimizers = _Catalogue(recorder, schema.META_OPTIMIZERS, open_trace=True)
        self._schedulers = _Catalogue(recorder, schema.META_SCHEDULERS)
        self._loaders = _Catalogue(recorder, schema.META_DATALOADERS)
        self._enclosing = structure.EnclosingForwards()
        # The `forward` frame of a model called as `model.forward(x)`, held (strongly, so that its
        # identity cannot be reused) from its first root-level submodule until the next update.
        self._outer_frame: types.FrameType | None = None
        # The root-level module whose post hook records the batch (a trainable model, grad enabled).
        self._batch_root: torch.nn.Module | None = None
        # The optimizer whose `step(closure)` is running and has not yet called its closure.
        self._closure_pending: torch.optim.Optimizer | None = None
        self._shims: ShimFinder | None = None
        # DataLoader.__iter__ calls per loader (epochs); >0 while a framework's loader wrapper fetches
        # from its inner DataLoader, whose batches are then recorded when the wrapper hands them out.
        self._loader_iterations: Any = None
        self._loader_muted = 0

    # -- plumbing ----------------------------------------------------------------------------
    def _patch(self, owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
        original = getattr(owner, name)
        own = name in vars(owner)
        wrapper = make(original)
        functools.update_wrapper(wrapper, original)
        self._originals.append((owner, name, vars(owner).get(name, original), own))
        setattr(owner, name, wrapper)

    def _safe(self, where: str, fn: Callable, *args: Any) -> None:
        if not self.recorder.active:
            return
        try:
            fn(*args)
        except Exception:
            self.recorder.capture_failed(where)

    def _outermost(self, key: str, call: Callable[[], Any], on_enter: Callable[[], None] | None = None,
                   on_exit: Callable[[Any], None] | None = None) -> Any:
        if dynamo_tracing():
            return call()
        depth = self._depth.get(key, 0)
        if depth == 0 and on_enter is not None:
            self._safe(key, on_enter)
        self._depth[key] = depth + 1
        try:
            result = call()
        finally:
            self._depth[key] = depth
        if depth == 0 and on_exit is not None:
            self._safe(key, on_exit, result)
        return result

    def uninstall(self) -> None:
        if self._shims is not None:
            self._shims.stop()
            self._shims = None
        self._outer_frame = self._batch_root = None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, name, original, own in reversed(self._originals):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._originals.clear()

    # -- installation ------------------------------------------------------------------------
    def install(self) -> "TorchPatches":
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self._handles += [
            register_optimizer_step_pre_hook(self._before_step),
            register_optimizer_step_post_hook(self._after_step),
            register_module_forward_pre_hook(self._forward_pre),
            register_module_forward_hook(self._forward_post, with_kwargs=True, always_call=True),
        ]
        self._patch_optimizer()
        self._patch_backward()
        self._patch_clip()
        self._patch_schedulers()
        self._patch_scaler()
        self._patch_module_mode()
        self._patch_module_compile()
        self._patch_loader()
        self._patch_dataloader_init()
        self._patch(torch, "save", self._simple_event(schema.EV_SAVE))
        self._patch(argparse.ArgumentParser, "parse_known_args", self._wrap_parse)
        for owner, name, kind in rng_restore_targets(self.skip_loads):
            self._patch(owner, name, lambda original, kind=kind: lambda *a, **k: self.skipped_call(kind))
        self._shims = install_shims(self)  # frameworks are patched when (and if) the trainer imports them
        return self

    def _simple_event(self, name: str) -> Callable[[Callable], Callable]:
        def make(original: Callable) -> Callable:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if dynamo_tracing():
                    return original(*args, **kwargs)
                self._safe(name, self.recorder.event, name)
                return original(*args, **kwargs)
            return wrapper
        return make

    # -- optimizer ---------------------------------------------------------------------------
    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> tuple[Any, Any] | None:
        if dynamo_tracing():
            return None
        self._outer_frame = None  # the forward it belonged to is over: release its locals
        if optimizer not in self._optimizers:
            self._safe("optimizer.step", self._describe_optimizer, optimizer)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)  # args[0] is the optimizer
        if callable(closure):
            return self._after_closure(optimizer, closure, args, kwargs)
        self._update_begins(optimizer)
        return None

    def _update_begins(self, optimizer: torch.optim.Optimizer) -> None:
        self._closure_pending = None
        self._safe("optimizer.step", self.recorder.event, schema.EV_OPT_STEP)
        self._safe("optimizer.step", self.recorder.before_update, optimizer)

    def _after_closure(self, optimizer: torch.optim.Optimizer, closure: Callable, args: Any, kwargs: Any) -> tuple[Any, Any]:
        """`optimizer.step(closure)` (Lightning, LBFGS) runs forward, backward and clipping inside the step:
        the update's own record (lr, gradient norm, first-update context) is taken when the closure first
        returns, so that the step's events read as in a plain loop and the norm is that of every backward."""
        self._closure_pending = optimizer

        def closure_then_update(*a: Any, **k: Any) -> Any:
            result = closure(*a, **k)
            if self._closure_pending is optimizer:
                self._update_begins(optimizer)
            return result
        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_update}
        return (args[0], closure_then_update, *args[2:]), kwargs

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if dynamo_tracing():
            return
        if self._closure_pending is optimizer:  # an optimizer that never called its closure
            self._update_begins(optimizer)
        if self._in_scaler_step:
            self._scaler_updated = True
        self._safe("optimizer.step", self.recorder.after_update, optimizer)
        self._scaled.clear()

    def _patch_optimizer(self) -> None:
        patches = self

        def make_init(original: Callable) -> Callable:
            def __init__(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
                patches._outermost("optimizer.__init__", lambda: original(self, *args, **kwargs),
                                   on_exit=lambda _: patches._describe_optimizer(self))
            return __init__

        self._patch(torch.optim.Optimizer, "__init__", make_init)
        self._patch(torch.optim.Optimizer, "zero_grad", self._simple_event(schema.EV_ZERO_GRAD))
        self._patch(torch.nn.Module, "zero_grad", self._simple_event(schema.EV_ZERO_GRAD))
        self._patch_skippable_load(torch.optim.Optimizer, "optimizer")

    def _describe_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """META_OPTIMIZERS gains this optimizer (its constructor's settings: `defaults` do not change later)."""
        self._optimizers.add(optimizer, {
            schema.OPT_CLASS: f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
            schema.OPT_DEFAULTS: optimizer.defaults,
            schema.OPT_PARAM_GROUPS: len(optimizer.param_groups),
            schema.OPT_N_PARAMS: sum(p.numel() for g in optimizer.param_groups for p in g["params"]),
        })

    def _patch_skippable_load(self, owner: type, kind: str) -> None:
        """Negative controls for resume checks: pretend the checkpoint lacked this kind of state."""
        if kind not in self.skip_loads:
            return
        patches = self

        def make(original: Callable) -> Callable:
            def load_state_dict(self: Any, *args: Any, **kwargs: Any) -> None:
                patches.skipped_call(kind)
            return load_state_dict
        self._patch(owner, "load_state_dict", make)

    def skipped_call(self, kind: str) -> None:
        """A control swallowed a restore: note it, so a control that never fires can say why."""
        if kind not in self._skipped_calls:
            self._skipped_calls.append(kind)
            self._safe("controls", lambda: self.recorder.meta("skipped_calls", self._skipped_calls, open_trace=True))

    # -- backward and loss -------------------------------------------------------------------
    def _record_backward(self, tensors: Any) -> None:
        self.recorder.event(schema.EV_BACKWARD)
        for t in (tensors if isinstance(tensors, (list, tuple)) else [tensors]):
            if isinstance(t, torch.Tensor):
                loss, scale = self._scaled.get(id(t), (t, None))
                self.recorder.on_loss(loss, scale)

    def _patch_backward(self) -> None:
        patches = self

        def make_tensor_backward(original: Callable) -> Callable:
            def backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                return patches._outermost("backward", lambda: original(self, *args, **kwargs),
                                          on_enter=lambda: patches._record_backward(self))
            return backward

        def make_autograd_backward(original: Callable) -> Callable:
            def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
                return patches._outermost("backward", lambda: original(tensors, *args, **kwargs),
                                          on_enter=lambda: patches._record_backward(tensors))
            return backward

        self._patch(torch.Tensor, "backward", make_tensor_backward)
        self._patch(torch.autograd, "backward", make_autograd_backward)

    # -- clipping ----------------------------------------------------------------------------
    def _patch_clip(self) -> None:
        patches = self
        from torch.nn.utils import clip_grad

        def make(original: Callable) -> Callable:
            signature = inspect.signature(original)

            def clip_grad_norm_(*args: Any, **kwargs: Any) -> Any:
                def enter() -> None:
                    patches.recorder.event(schema.EV_CLIP)

                def exit_(total: Any) -> None:
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    patches.recorder.on_clip(total, bound.arguments["max_norm"], bound.arguments["norm_type"])
                return patches._outermost("clip", lambda: original(*args, **kwargs), enter, exit_)
            return clip_grad_norm_

        original = clip_grad.clip_grad_norm_
        self._patch(clip_grad, "clip_grad_norm_", make)
        if torch.nn.utils.clip_grad_norm_ is original:
            self._patch(torch.nn.utils, "clip_grad_norm_", lambda _: clip_grad.clip_grad_norm_)
        if hasattr(torch.nn.utils, "clip_grads_with_norm_"):  # torch >= 2.6
            self._patch_two_step_clip()

    def _patch_two_step_clip(self) -> None:
        """torch's two-step clipping (`get_total_norm`, then `clip_grads_with_norm_`), as accelerate uses it.

        The clip is recorded at `clip_grads_with_norm_`, with the total norm it is given: the norm
        before clipping. Its norm type is that of the step's last `get_total_norm` call (the clip
        itself is not told). A `get_total_norm` alone (logging a norm) is no clip and records nothing.
        """
        patches = self
        norm_types: list[float] = []

        def make_total(original: Callable) -> Callable:
            signature = inspect.signature(original)

            def get_total_norm(*args: Any, **kwargs: Any) -> Any:
                def exit_(_: Any) -> None:
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    norm_types[:] = [float(bound.arguments["norm_type"])]
                return patches._outermost("clip", lambda: original(*args, **kwargs), on_exit=exit_)
            return get_total_norm

        def make_clip(original: Callable) -> Callable:
            signature = inspect.signature(original)

            def clip_grads_with_norm_(*args: Any, **kwargs: Any) -> Any:
                def enter() -> None:
                    bound = signature.bind(*args, **kwargs)
                    patches.recorder.event(schema.EV_CLIP)
                    patches.recorder.on_clip(bound.arguments["total_norm"], bound.arguments["max_norm"],
                                             norm_types[-1] if norm_types else 2.0)
                return patches._outermost("clip", lambda: original(*args, **kwargs), on_enter=enter)
            return clip_grads_with_norm_

        # Public in torch.nn.utils (where accelerate imports them from at each call); private in clip_grad.
        for name, make in (("get_total_norm", make_total), ("clip_grads_with_norm_", make_clip)):
            self._patch(torch.nn.utils, name, make)

    # -- schedulers --------------------------------------------------------------------------
    def _patch_schedulers(self) -> None:
        patches = self

        def make_init(original: Callable) -> Callable:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                # The constructor's own initial step() is not a training event: the depth guard hides it.
                patches._depth["scheduler.step"] = patches._depth.get("scheduler.step", 0) + 1
                try:
                    patches._outermost("scheduler.__init__", lambda: original(self, *args, **kwargs),
                                       on_exit=lambda _: patches._describe_scheduler(self))
                finally:
                    patches._depth["scheduler.step"] -= 1
            return __init__

        def stepping(scheduler: Any) -> None:
            # One made before capture started is described at its first step, with the state it steps from.
            if scheduler not in patches._schedulers:
                patches._safe("scheduler.step", patches._describe_scheduler, scheduler)
            patches.recorder.event(schema.EV_SCHED_STEP)

        def make_step(original: Callable) -> Callable:
            def step(self: Any, *args: Any, **kwargs: Any) -> Any:
                return patches._outermost("scheduler.step", lambda: original(self, *args, **kwargs),
                                          on_enter=lambda: stepping(self))
            return step

        for cls in _scheduler_classes():
            if "__init__" in vars(cls):
                self._patch(cls, "__init__", make_init)
            if "step" in vars(cls):
                self._patch(cls, "step", make_step)
            if "load_state_dict" in vars(cls) or cls is lr_scheduler.LRScheduler:
                self._patch_skippable_load(cls, "scheduler")

    def _describe_scheduler(self, scheduler: Any) -> None:
        """META_SCHEDULERS gains this scheduler: its class and state_dict (private keys left out)."""
        state = {k: v for k, v in scheduler.state_dict().items() if not k.startswith("_")}
        self._schedulers.add(scheduler, {schema.OPT_CLASS: f"{type(scheduler).__module__}.{type(scheduler).__qualname__}",
                                         schema.SCHED_STATE: state})

    # -- GradScaler --------------------------------------------------------------------------
    def _patch_scaler(self) -> None:
        from torch.amp.grad_scaler import GradScaler

        patches = self

        def make_scale(original: Callable) -> Callable:
            def scale(self: Any, outputs: Any) -> Any:
                if dynamo_tracing():
                    return original(self, outputs)
                patches._safe("scaler.scale", patches.recorder.event, schema.EV_SCALER_SCALE)
                result = original(self, outputs)
                if isinstance(outputs, torch.Tensor) and isinstance(result, torch.Tensor):
                    factor = self._scale if getattr(self, "_enabled", False) else None
                    patches._scaled[id(result)] = (outputs, factor)
                return result
            return scale

        def make_step(original: Callable) -> Callable:
            def step(self: Any, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
                if dynamo_tracing():
                    return original(self, optimizer, *args, **kwargs)
                patches._safe("scaler.step", patches.recorder.event, schema.EV_SCALER_STEP)
                patches._in_scaler_step, patches._scaler_updated = True, False
                try:
                    result = original(self, optimizer, *args, **kwargs)
                finally:
                    patches._in_scaler_step = False
                if not patches._scaler_updated:  # inf/nan gradients: the scaler skipped the update
                    patches._safe("scaler.step", patches.recorder.before_update, optimizer)
                    patches._safe("scaler.step", patches.recorder.after_update, optimizer, True)
                return result
            return step

        self._patch(GradScaler, "scale", make_scale)
        self._patch(GradScaler, "step", make_step)
        self._patch(GradScaler, "unscale_", self._simple_event(schema.EV_SCALER_UNSCALE))
        self._patch(GradScaler, "update", self._simple_event(schema.EV_SCALER_UPDATE))
        self._patch_skippable_load(GradScaler, "grad_scaler")

    # -- modules -----------------------------------------------------------------------------
    # Both forward hooks return at once while Dynamo traces, so the depth count stays balanced: the
    # compiled region's submodules are never seen, the OptimizedModule around them is, eagerly.
    def _forward_pre(self, module: torch.nn.Module, args: Any) -> None:
        if IS_COMPILING is not None and IS_COMPILING():  # dynamo_tracing(), inlined: this runs per module call
            return
        depth = self._forward_depth
        self._forward_depth = depth + 1
        # A forward run by the autograd engine is activation checkpointing recomputing a block during
        # backward: part of the backward, not a new call of the model (nor a second root module).
        if depth == 0 and not _in_autograd_backward():
            self._batch_root = None
            self._safe("forward", self._root_forward, module)

    def _root_forward(self, module: torch.nn.Module) -> None:
        """A root-level forward: its event, and for a model's grad-enabled call the mode and the batch.

        A trainer calling `model.forward(x)` fires no hook for `model`: its submodules arrive here one
        by one, and one of them may be fed a constant (a zero hidden state). The enclosing forward's own
        arguments are then the batch, recorded once per call, named after the model.
        """
        if isinstance(module, torch.fx.GraphModule) and next(module.parameters(), None) is None:
            return  # a compiled graph run by its backend (parameters lifted to inputs): not the trainer's call
        grad = torch.is_grad_enabled()
        outer = self._enclosing.find(module, sys._getframe(1))
        if outer is not None:
            if outer is self._outer_frame:
                return  # another submodule of a call already recorded
            self._outer_frame = outer
            root = structure.forward_owner(outer)
        else:
            root = module
        self.recorder.event(schema.EV_FORWARD if grad else schema.EV_FORWARD_NO_GRAD)
        # A root module without trainable parameters (a frozen smoother, a loss) is not "the model".
        if not grad or not any(p.requires_grad for p in root.parameters()):
            return
        self.recorder.on_root(root)
        self.recorder.on_mode(root)
        if outer is None:
            self._batch_root = root  # its inputs are digested by the post hook
        else:
            # Read when its first submodule runs: an argument reassigned before that is seen reassigned.
            self.recorder.on_batch(_data_tensors(structure.forward_arguments(outer)), _root_name(root))

    def _patch_loader(self) -> None:
        from torch.utils.data import DataLoader
        from torch.utils.data.dataloader import _BaseDataLoaderIter

        from parity.capture.recorder import rng_digests

        patches = self
        # Epochs are counted per DataLoader by its __iter__ calls; a persistent-workers loader hands out
        # the same iterator again, so the iterator's epoch is updated on every call. Weak keys: a
        # finished loop's loader and iterator are freed as without capture.
        iterations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._loader_iterations = iterations
        epoch_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        rng_recorded: list[bool] = []

        def make_iter(original: Callable) -> Callable:
            def __iter__(self: Any) -> Any:
                if self not in patches._loaders:  # made before capture started
                    patches._safe("loader.__iter__", patches._describe_loader, self)
                iterator = original(self)

                def count() -> None:
                    iterations[self] = iterations.get(self, 0) + 1
                    if isinstance(iterator, _BaseDataLoaderIter):
                        epoch_of[iterator] = iterations[self] - 1
                patches._safe("loader.__iter__", count)
                return iterator
            return __iter__

        def first_training_fetch() -> None:
            rng_recorded.append(True)
            patches.recorder.meta(schema.META_RNG_AT_FIRST_BATCH, rng_digests())

        def make_next(original: Callable) -> Callable:
            def __next__(self: Any) -> Any:
                if not rng_recorded and torch.is_grad_enabled():
                    patches._safe("loader", first_training_fetch)
                batch = original(self)  # StopIteration passes through untouched
                if not patches._loader_muted:
                    patches.loader_batch(batch, epoch_of.get(self))
                return batch
            return __next__
        self._patch(DataLoader, "__iter__", make_iter)
        self._patch(_BaseDataLoaderIter, "__next__", make_next)

    def loader_batch(self, batch: Any, epoch: int | None) -> None:
        """A batch handed to the training loop: its event, and with grad enabled its digests."""
        if torch.is_grad_enabled():
            self._safe("loader", self.recorder.event, schema.EV_DATA)
            self._safe("loader", lambda: self.recorder.on_loader_batch(batch, epoch))
        else:
            self._safe("loader", self.recorder.event, schema.EV_DATA_NO_GRAD)

    def loader_epoch(self, loader: Any) -> int | None:
        """0-based count of `loader.__iter__` calls so far (None for a loader never iterated)."""
        count = self._loader_iterations.get(loader) if self._loader_iterations is not None else None
        return None if count is None else count - 1

    @contextlib.contextmanager
    def loader_muted(self) -> Iterator[None]:
        """Inner DataLoader fetches inside this block are not recorded: a wrapper records what it yields."""
        self._loader_muted += 1
        try:
            yield
        finally:
            self._loader_muted -= 1

    def _patch_dataloader_init(self) -> None:
        from torch.utils.data import DataLoader

        patches = self

        def make(original: Callable) -> Callable:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                patches._outermost("dataloader.__init__", lambda: original(self, *args, **kwargs),
                                   on_exit=lambda _: patches._describe_loader(self))
            return __init__
        self._patch(DataLoader, "__init__", make)

    def _describe_loader(self, loader: Any) -> None:
        """META_DATALOADERS gains this loader's settings (sampler, batch size, workers, dataset...)."""
        from parity.capture.batches import describe_loader

        self._loaders.add(loader, describe_loader(loader))

    def _forward_post(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any = None) -> None:
        # `always_call` hooks also run when the forward raised (torch then passes no output): the depth
        # count must come down either way, or every later forward would look nested.
        if IS_COMPILING is not None and IS_COMPILING():
            return
        # Never below 0: a post hook whose pre hook ran before capture was installed.
        depth = self._forward_depth - 1 if self._forward_depth else 0
        self._forward_depth = depth
        if depth == 0 and self._batch_root is module:
            self._batch_root = None
            self._safe("forward", lambda: self.recorder.on_batch(_data_tensors((args, kwargs)), _root_name(module)))

    def _patch_module_compile(self) -> None:
        """`model.compile()` compiles the whole call, global hooks included: run them around it, eagerly."""
        patches = self

        def make(original: Callable) -> Callable:
            def compile(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
                result = original(self, *args, **kwargs)
                compiled = getattr(self, "_compiled_call_impl", None)
                if compiled is not None:
                    self._compiled_call_impl = functools.partial(patches._call_compiled, self, compiled)
                return result
            return compile
        if hasattr(torch.nn.Module, "compile"):
            self._patch(torch.nn.Module, "compile", make)

    def _call_compiled(self, module: torch.nn.Module, compiled: Callable, *args: Any, **kwargs: Any) -> Any:
        if not self._handles or dynamo_tracing():  # uninstalled since: a plain compiled call
            return compiled(*args, **kwargs)
        self._forward_pre(module, args)
        output = None
        try:
            output = compiled(*args, **kwargs)
        finally:
            self._forward_post(module, args, kwargs, output)
        return output

    def _patch_module_mode(self) -> None:
        patches = self

        def make(original: Callable) -> Callable:
            def train(self: torch.nn.Module, mode: bool = True) -> Any:
                name = schema.EV_TRAIN_MODE if mode else schema.EV_EVAL_MODE
                return patches._outermost("train", lambda: original(self, mode),
                                          on_enter=lambda: patches.recorder.event(name))
            return train
        self._patch(torch.nn.Module, "train", make)

    # -- argparse ----------------------------------------------------------------------------
    def _wrap_parse(self, original: Callable) -> Callable:
        patches = self

        def parse_known_args(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
            def described(result: Any) -> None:
                namespace = result[0] if isinstance(result, tuple) else result
                patches._args.update(vars(namespace))
                patches.recorder.meta(schema.META_ARGPARSE, patches._args)
                for dest, actions in argparse_options(self).items():
                    patches._arg_options.setdefault(dest, actions)
                patches.recorder.meta(schema.META_ARGPARSE_OPTIONS, patches._arg_options)
            return patches._outermost("argparse", lambda: original(self, *args, **kwargs), on_exit=described)
        return parse_known_args
