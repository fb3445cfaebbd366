"""accelerate: the clip the Accelerator computed, its state as config, and the batches its loaders hand out.

* `Accelerator.clip_grad_norm_` is the clip: its return value is the total norm before clipping
  (accelerate 1.x clips through `get_total_norm` + `clip_grads_with_norm_`, and with an infinite
  threshold, as HF Trainer uses it to log the norm, clips nothing at all), its `max_norm` the threshold.
* The Accelerator's state (mixed precision, accumulation steps, processes, ...) is a config object,
  read at the first update (the trainer may change `gradient_accumulation_steps` after construction).
* `DataLoaderShard` and `DataLoaderDispatcher` fetch one batch ahead of what they yield: a batch is
  recorded when it is yielded (moved to the device, skipped batches left out), not when fetched.

Optimizer updates need nothing here: `AcceleratedOptimizer.step` calls the wrapped optimizer's step
only when gradients are synchronised, so accumulation micro-steps never reach the step hooks.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import TYPE_CHECKING, Any, Callable, Iterator

from parity.trace import schema

if TYPE_CHECKING:
    from parity.capture.patches import TorchPatches

TARGETS = ("accelerate.accelerator", "accelerate.data_loader")

#: Accelerator attributes recorded as its config (each read with getattr: absent ones are left out).
STATE_FIELDS = ("mixed_precision", "gradient_accumulation_steps", "num_processes", "distributed_type", "split_batches",
                "even_batches", "dispatch_batches", "use_seedable_sampler", "step_scheduler_with_optimizer",
                "non_blocking", "use_stateful_dataloader")


def accelerator_state(accelerator: Any) -> types.SimpleNamespace:
    """The Accelerator's settings that change training, as plain values (a namespace: config by type)."""
    state: dict[str, Any] = {}
    for name in STATE_FIELDS:
        try:
            value = getattr(accelerator, name)
        except Exception:  # a property that needs an initialised backend
            continue
        state[name] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    return types.SimpleNamespace(**state)


def install(patches: "TorchPatches", module: types.ModuleType) -> None:
    if module.__name__ == "accelerate.accelerator":
        _patch_accelerator(patches, module.Accelerator)
    else:
        for name in ("DataLoaderShard", "DataLoaderDispatcher"):
            if name in vars(module):
                _patch_loader(patches, getattr(module, name))


def _patch_accelerator(patches: "TorchPatches", accelerator: type) -> None:
    def make_clip(original: Callable) -> Callable:
        signature = inspect.signature(original)

        def clip_grad_norm_(self: Any, *args: Any, **kwargs: Any) -> Any:
            def enter() -> None:
                patches.recorder.event(schema.EV_CLIP)

            def exit_(total: Any) -> None:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                patches.recorder.on_clip(total, bound.arguments["max_norm"], bound.arguments["norm_type"])
            return patches._outermost("clip", lambda: original(self, *args, **kwargs), enter, exit_)
        return clip_grad_norm_

    def make_init(original: Callable) -> Callable:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            patches.recorder.on_framework_config("accelerate.Accelerator", functools.partial(accelerator_state, self))
        return __init__

    patches._patch(accelerator, "clip_grad_norm_", make_clip)
    patches._patch(accelerator, "__init__", make_init)


def _patch_loader(patches: "TorchPatches", loader_class: type) -> None:
    def make(original: Callable) -> Callable:
        def __iter__(self: Any) -> Iterator[Any]:
            batches = original(self)
            while True:
                with patches.loader_muted():
                    try:
                        batch = next(batches)
                    except StopIteration:
                        return
                patches.loader_batch(batch, patches.loader_epoch(getattr(self, "base_dataloader", None)))
                yield batch
        return __iter__
    patches._patch(loader_class, "__iter__", make)
