"""transformers.Trainer (and every subclass: TRL's SFTTrainer): its TrainingArguments and its accumulation window.

* `Trainer.args` (TrainingArguments, or a subclass such as TRL's SFTConfig) is the run's config,
  recorded through `to_dict()` under the name `transformers.Trainer.args`, whatever variable the
  trainer script holds it in (or none: a Trainer built inside a library function).
* `Trainer.get_batch_samples` fetches every micro-batch of one update before running any of them (to
  count the tokens the loss is normalised by): that list is the update's data, not only the last fetch.

Clipping goes through `Accelerator.clip_grad_norm_` (see the accelerate shim).
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from parity.capture.patches import TorchPatches

TARGETS = ("transformers.trainer",)


def install(patches: "TorchPatches", module: types.ModuleType) -> None:
    trainer = module.Trainer

    def make_init(original: Callable) -> Callable:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            # Read at the first update: a trainer may still adjust its arguments before train().
            patches.recorder.on_framework_config("transformers.Trainer.args", functools.partial(getattr, self, "args"))
        return __init__

    def make_window(original: Callable) -> Callable:
        def get_batch_samples(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            batches = result[0] if isinstance(result, tuple) and result else None
            if isinstance(batches, list):
                patches._safe("get_batch_samples", patches.recorder.on_loader_window, batches)
            return result
        return get_batch_samples

    patches._patch(trainer, "__init__", make_init)
    if hasattr(trainer, "get_batch_samples"):
        patches._patch(trainer, "get_batch_samples", make_window)
