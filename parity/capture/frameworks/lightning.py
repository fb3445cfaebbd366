"""Lightning (`lightning.pytorch`, `pytorch_lightning`): the Trainer's flags and the module's hparams as config,
and one update's micro-batches recorded as the batch it trained on.

* Lightning runs forward and backward inside `optimizer.step(closure)`; the patches record an update
  with a closure when the closure returns, so nothing Lightning-specific is needed for the step.
* The Trainer's flags (every `Trainer.__init__` argument, as Lightning resolved it where the Trainer
  exposes it: `precision`, `gradient_clip_algorithm`, `max_epochs`, ...) are the config object
  `lightning.Trainer.settings`; `save_hyperparameters()` of the LightningModule and of the
  LightningDataModule are `lightning.LightningModule.hparams` and `lightning.LightningDataModule.hparams`.
  All are read at the first update, as the run used them.
* The batch is the one handed to `training_step` (a loader that prefetches, as Lightning's fetcher does
  for iterable datasets, fetches the next batch first). With automatic optimization the micro-batches
  of one accumulation window, and the root forwards' inputs, are joined (tensors concatenated along
  dim 0) and digested once per update: 2 x 16 rows accumulated and 1 x 32 rows are the same data.
  Micro-batches that cannot be joined (other structure, other trailing shapes) are recorded one by one.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import weakref
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from parity.capture.patches import TorchPatches

TARGETS = ("lightning.pytorch", "pytorch_lightning")

#: Config object names (the `lightning.` prefix is kept for `pytorch_lightning` too: the same settings).
CONFIG_TRAINER = "lightning.Trainer.settings"
CONFIG_MODULE = "lightning.LightningModule.hparams"
CONFIG_DATAMODULE = "lightning.LightningDataModule.hparams"

_SCALARS = (bool, int, float, str, type(None))


def install(patches: "TorchPatches", module: types.ModuleType) -> None:
    window = _Window(patches)
    patches._patch(module.Trainer, "__init__", functools.partial(_wrap_trainer_init, patches))
    patches._patch(module.strategies.Strategy, "training_step", window.wrap_training_step)
    patches._patch(patches.recorder, "on_batch", window.wrap_on_batch)


# -- config -----------------------------------------------------------------------------------------
def _plain(value: Any, depth: int = 0) -> Any:
    """A setting as JSON: containers recursively, objects by what Lightning calls them (a callback's
    `state_key` holds its settings) or by class. Never raises on a foreign object."""
    if isinstance(value, enum.Enum):  # GradClipAlgorithmType, precision enums: their plain value
        value = value.value
    if isinstance(value, _SCALARS) or depth > 8:
        return value if isinstance(value, _SCALARS) else repr(value)[:200]
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if type(value).__module__ == "torch" and type(value).__name__ in ("dtype", "device"):
        return str(value)
    try:
        key = getattr(value, "state_key", None)
    except Exception:  # a property that needs a running trainer
        key = None
    cls = type(value)
    return key if isinstance(key, str) else f"<{cls.__module__}.{cls.__qualname__}>"


def trainer_settings(trainer: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Every `Trainer.__init__` flag; where the Trainer has an attribute of that name (`precision`,
    `max_epochs`, `gradient_clip_algorithm`, `callbacks`...), the value it resolved, else the one given."""
    out = {}
    for name, value in given.items():
        try:
            value = getattr(trainer, name, value)
        except Exception:  # a property not available in this state: the flag as given
            pass
        out[name] = _plain(value)
    return out


def _hparams(trainer: Any, attribute: str) -> dict[str, Any] | None:
    owner = getattr(trainer, attribute, None)
    hparams = getattr(owner, "hparams", None)
    return _plain(dict(hparams)) if hparams else None


def _wrap_trainer_init(patches: "TorchPatches", original: Callable) -> Callable:
    signature = inspect.signature(original)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)

        def register() -> None:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            given = {k: v for k, v in bound.arguments.items() if k != "self"}
            ref = weakref.ref(self)
            recorder = patches.recorder
            # Read at the first update: fit() attaches the module and datamodule, and resolves flags.
            recorder.on_framework_config(CONFIG_TRAINER, functools.partial(_read, ref, trainer_settings, given))
            recorder.on_framework_config(CONFIG_MODULE, functools.partial(_read, ref, _hparams, "lightning_module"))
            recorder.on_framework_config(CONFIG_DATAMODULE, functools.partial(_read, ref, _hparams, "datamodule"))
        patches._safe("lightning.Trainer.__init__", register)
    return __init__


def _read(ref: weakref.ref, read: Callable, *args: Any) -> Any:
    trainer = ref()
    return read(trainer, *args) if trainer is not None else None


# -- batches ----------------------------------------------------------------------------------------
def join_batches(batches: list[Any]) -> Any | None:
    """The micro-batches as one batch, tensors concatenated along dim 0; None when they do not join
    (another structure, a 0-d tensor, other trailing shapes or dtypes, non-tensor leaves that differ)."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    if len(batches) == 1:
        return batches[0]
    flat = [tree_flatten(b) for b in batches]
    spec = flat[0][1]
    if any(s != spec for _, s in flat[1:]):
        return None
    leaves = []
    for column in zip(*(leaves for leaves, _ in flat)):
        first = column[0]
        if isinstance(first, torch.Tensor):
            if not all(isinstance(t, torch.Tensor) and t.dim() >= 1 and t.dtype == first.dtype
                       and t.shape[1:] == first.shape[1:] and t.device == first.device for t in column):
                return None
            with torch.no_grad():
                leaves.append(torch.cat([t.detach() for t in column]))
        elif all(c is first or (isinstance(c, _SCALARS) and type(c) is type(first) and c == first) for c in column):
            leaves.append(first)
        else:
            return None
    return tree_unflatten(leaves, spec)


class _Window:
    """One update's micro-batches under automatic optimization: the batches handed to `training_step`
    and the root forwards' inputs, held until the window's last `training_step` returns, then given to
    the recorder joined. It holds references to the window's batch tensors until then (no copies
    before the join); a trainer that edits a batch in place after its forward is seen edited."""

    def __init__(self, patches: "TorchPatches") -> None:
        self.patches = patches
        self._on_batch: Callable | None = None
        self._collecting = False  # inside an automatic-optimization window, until its last micro-batch
        self._in_step = False  # inside its training_step: root forwards belong to the current micro-batch
        self._batches: list[Any] = []
        self._forwards: list[list[tuple[list[torch.Tensor], str]]] = []
        self._epoch: int | None = None

    def wrap_on_batch(self, original: Callable) -> Callable:
        self._on_batch = original

        def on_batch(tensors: list[torch.Tensor], module: str) -> None:
            if self._in_step and self._forwards:
                self._forwards[-1].append((tensors, module))
            else:
                original(tensors, module)
        return on_batch

    def wrap_training_step(self, original: Callable) -> Callable:
        window = self

        def training_step(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():
                return original(self, *args, **kwargs)
            window.patches._safe("lightning.training_step", window._begin, self, args, kwargs)
            try:
                return original(self, *args, **kwargs)
            finally:
                window.patches._safe("lightning.training_step", window._end, self)
        return training_step

    def _begin(self, strategy: Any, args: tuple, kwargs: dict) -> None:
        batch = kwargs["batch"] if "batch" in kwargs else args[0] if args else None
        module = strategy.lightning_module
        trainer = getattr(module, "_trainer", None)
        self._epoch = getattr(trainer, "current_epoch", None)
        self._collecting = bool(getattr(module, "automatic_optimization", False))
        if not self._collecting:  # manual optimization steps inside training_step: record as it comes
            self.patches.recorder.on_loader_batch(batch, self._epoch)
            return
        self._batches.append(batch)
        self._forwards.append([])
        self._in_step = True

    def _end(self, strategy: Any) -> None:
        self._in_step = False
        if not self._collecting:
            return
        trainer = getattr(strategy.lightning_module, "_trainer", None)
        should_accumulate = getattr(getattr(trainer, "fit_loop", None), "_should_accumulate", None)
        if callable(should_accumulate) and should_accumulate():
            return  # not the window's last micro-batch: its update comes later
        self._collecting = False
        batches, forwards = self._batches, self._forwards
        self._batches, self._forwards = [], []
        self._flush(batches, forwards)

    def _flush(self, batches: list[Any], forwards: list[list[tuple[list[torch.Tensor], str]]]) -> None:
        recorder, on_batch = self.patches.recorder, self._on_batch
        assert on_batch is not None
        joined = join_batches(batches)
        inputs = _join_forwards(forwards) if joined is not None else None
        if joined is None or inputs is None:
            for batch, calls in zip(batches, forwards):
                recorder.on_loader_batch(batch, self._epoch)
                for tensors, module in calls or [([], "")]:
                    on_batch(tensors, module)
            return
        recorder.on_loader_batch(joined, self._epoch)
        for tensors, module in inputs or [([], "")]:
            on_batch(tensors, module)


def _join_forwards(forwards: list[list[tuple[list[torch.Tensor], str]]]) -> list[tuple[list[torch.Tensor], str]] | None:
    """The j-th root forward's inputs of every micro-batch joined; None unless every micro-batch ran
    the same root modules with joinable inputs."""
    shape = [[module for _, module in calls] for calls in forwards]
    if any(s != shape[0] for s in shape[1:]):
        return None
    joined = []
    for j, module in enumerate(shape[0]):
        tensors = join_batches([calls[j][0] for calls in forwards])
        if tensors is None:
            return None
        joined.append((tensors, module))
    return joined
