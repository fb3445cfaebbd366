"""The recorder: turns the torch events that the patches report into one record per optimizer step.

Step attribution (documented in the README):
  * a step is one ``optimizer.step()`` call (or one ``GradScaler.step``, which may skip the update);
    the first update is step 0;
  * events before an update belong to that update's step;
  * after an update, events that cannot start a new iteration (scheduler.step, scaler.update, save,
    eval passes, mode switches) still belong to the step just taken; the first *opening* event
    (zero_grad, a forward with grad enabled, backward, scaler.scale) starts the next step.
A step record is written when the next step opens or the process ends, so a killed process leaves
every earlier step on disk.
"""

from __future__ import annotations

import functools
import operator
import os
import random
import resource
import sys
import threading
import time
import traceback
import warnings
import weakref
from typing import Any, Callable, Iterable

import numpy as np
import torch

from parity.capture import digest, metadata, settings, sources, structure
from parity.capture.batches import LoaderBatch, label_histogram
from parity.capture.config import CaptureConfig, step_writer_from_env
from parity.capture.step_writer import StepWriter
from parity.trace import schema
from parity.trace.writer import TraceWriter


def _jsonable(value: Any) -> Any:
    """Hyperparameters and argparse values as JSON: tensors to floats, tuples to lists, rest to str."""
    if isinstance(value, torch.Tensor):
        return digest.json_float(float(value.detach().reshape(-1)[0])) if value.numel() == 1 else f"<tensor {tuple(value.shape)}>"
    if isinstance(value, float):
        return digest.json_float(value)
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def group_hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"]]


def _optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[Any]]:
    tensors: list[torch.Tensor] = []
    scalars: list[Any] = []
    for p in _optimizer_params(optimizer):
        for key, value in sorted(optimizer.state.get(p, {}).items()):
            if isinstance(value, torch.Tensor):
                tensors.append(value)
            else:
                scalars.append((key, repr(value)))
    return tensors, scalars


def _parameter_names(roots: list[torch.nn.Module]) -> dict[int, str]:
    """id(parameter) -> its name under the model roots, without wrapper segments (the first root naming it wins)."""
    names: dict[int, str] = {}
    for root in roots:
        for name, p in root.named_parameters():
            names.setdefault(id(p), structure.unwrapped_name(name))
    return names


def _parameter_layout(params: list[torch.Tensor], names: list[str]) -> dict[str, Any]:
    """Placements and shapes of the DTensor parameters (FSDP2 shards), by `param_sums` name."""
    layout = {}
    for name, p in zip(names, params):
        placements = getattr(p, "placements", None)
        if placements is not None and hasattr(p, "to_local"):
            layout[name] = {schema.LAYOUT_PLACEMENTS: [str(x) for x in placements], schema.LAYOUT_SHAPE: list(p.shape),
                            schema.LAYOUT_LOCAL_SHAPE: list(p.to_local().shape)}
    return layout


#: torch.compiler.is_compiling, looked up once: the hooks ask on every module call. Dynamo still
#: recognises the function object and folds the call to True inside a compiled region.
IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None)


def dynamo_tracing() -> bool:
    """True while torch.compile traces: capture code then returns at once, so it is never compiled in."""
    return IS_COMPILING is not None and bool(IS_COMPILING())


def rng_digests() -> dict[str, str]:
    """Digests of every RNG a trainer commonly draws from; CUDA only if already initialised."""
    numpy_state = np.random.get_state()  # once: each call copies the 624-word key
    out = {
        "torch": digest.digest_bytes(torch.get_rng_state().numpy().tobytes()),
        "numpy": digest.digest_bytes(repr(numpy_state[2:]).encode() + numpy_state[1].tobytes()),
        "python": digest.digest_bytes(repr(random.getstate()).encode()),
    }
    if metadata.cuda_in_use():
        out["cuda"] = digest.digest_bytes(b"".join(s.numpy().tobytes() for s in torch.cuda.get_rng_state_all()))
    return out


class Recorder:
    """Builds step records from events and writes them through a TraceWriter.

    Contract: it never raises into the trainer. A failure inside capture is written to the trace as a
    ``capture_error`` meta record and warned about once; training goes on. It never writes from a
    forked child (DataLoader workers inherit the patches): only the process that created it records.
    """

    def __init__(self, directory: str | os.PathLike, config: CaptureConfig, header: dict[str, Any]) -> None:
        self.directory = directory
        self.config = config
        self.pid = os.getpid()
        self.rank = int(os.environ.get("RANK", "0"))
        self._header = header
        self._writer: TraceWriter | None = None
        self._pending_meta: list[tuple[str, Any]] = []
        self._step = 0
        self._updated = False
        self._clip_seen = False
        self._current = self._new_step()
        self._last_update_end: float | None = None
        self._first_event_time: float | None = None
        self._warned = False
        # Batches handed out since the last training forward: the last fetch, or a framework's whole
        # accumulation window (on_loader_window).
        self._fetched: list[LoaderBatch] = []
        # Config objects a framework shim found ({where: object}), named before the frame search.
        self._framework_configs: dict[str, Any] = {}
        # Roots of grad-enabled forwards, held weakly until the first update describes them.
        self._roots: dict[int, weakref.ref] = {}
        self._context_recorded = False
        # id(parameter) -> its name in the model, for `param_sums` (taken at the first update).
        self._param_names: dict[int, str] = {}
        # Views of the parameters and optimizer state for the fused digests, reused across steps.
        self._sum_plans = digest.fused.PlanCache()
        self._sum_names_for: tuple[list[torch.Tensor], list[str]] | None = None
        # Steps are written from the trainer's thread and from the step writer's: one at a time.
        self._write_lock = threading.Lock()
        # The current step's device-to-host copy, launched at its update, with the objects it carries.
        self._early_transfer: tuple[tuple[Any, ...], digest.Transfer] | None = None
        # The closed GPU step is held until the next update, where the trainer's thread finishes it while the
        # GPU works on that update: no second thread to share the interpreter with. On an H200 (bf16, 28 ms
        # steps) this cost 1.021x against 1.061x for a background writer thread (reports/gpu/
        # capture-overhead-diagnose.md); PARITY_STEP_WRITER=thread still selects the thread.
        self._write_at_update = step_writer_from_env() == "update"
        self._step_writer: StepWriter | None = None
        self._held: tuple[dict[str, Any], digest.Transfer] | None = None
        # Called after each update as (step, parameters, their `param_sums` names): deep capture arms on them.
        self.update_listeners: list[Callable[[int, list[torch.Tensor], list[str]], None]] = []
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def _ensure_writer(self) -> TraceWriter:
        # Opened lazily so that launcher processes (torchrun's parent) that never train leave no file.
        if self._writer is None:
            self._writer = TraceWriter(self.directory, self.rank)
            self._writer.write({**self._header, "type": schema.HEADER, "schema": schema.SCHEMA_NAME,
                                "version": schema.SCHEMA_VERSION, "rank": self.rank, "pid": self.pid,
                                "level": str(self.config)})
            for key, value in self._pending_meta:
                self._writer.write({"type": schema.META, "key": key, "value": value})
            self._pending_meta.clear()
        return self._writer

    @property
    def active(self) -> bool:
        return not self.closed and os.getpid() == self.pid and not dynamo_tracing()

    def meta(self, key: str, value: Any, *, open_trace: bool = False) -> None:
        """Record run metadata; it is buffered until the trace exists unless `open_trace`."""
        if not self.active:
            return
        value = _jsonable(value)
        with self._write_lock:  # the step writer's thread may be opening the trace right now
            if self._writer is None and not open_trace:
                self._pending_meta.append((key, value))
            else:
                self._ensure_writer().write({"type": schema.META, "key": key, "value": value})

    def close(self, status: str = schema.END_OK, error: str | None = None) -> None:
        if not self.active:
            return
        if self._updated:
            self._write_step()
        self._drain_step_writer()
        if self._step_writer is not None:
            self._step_writer.stop()
            self._step_writer = None
        if self._writer is not None:
            end = {"type": schema.END, "status": status, "steps": self._step, "load": metadata.load_average()}
            if error:
                end["error"] = error
            if self._current["events"]:
                end["trailing_events"] = self._current["events"]
            self._writer.write(end)
            self._writer.close()
        self.closed = True

    def capture_failed(self, where: str) -> None:
        if not self._warned:
            warnings.warn(f"parity: capture failed in {where}; training continues, the trace notes it", stacklevel=3)
            self._warned = True
        try:
            self.meta("capture_error", {"where": where, "traceback": traceback.format_exc(limit=6)}, open_trace=True)
        except Exception:  # the trace itself is unwritable: nothing left to record into
            pass

    # -- step bookkeeping --------------------------------------------------------------------
    def _new_step(self) -> dict[str, Any]:
        return {"type": schema.STEP, "step": self._step, "events": [], "losses": [], "groups": [],
                "grad_norm": None, "clip": None, "batch": [], "loader": [], "params": None, "optim_state": None,
                "rng": None, "wall_ms": None, "peak_mem_bytes": None, "skipped": False,
                schema.F_FIELDS: [], schema.F_SAMPLES: None, schema.F_LABELS: None, schema.F_EPOCH: None,
                schema.F_MODE: None, schema.F_PARAM_SUMS: None}

    def _write_step(self) -> None:
        """Close the current step: launch its device-to-host copy, then write it once the values arrived.

        A step whose values are on the host is written at once. A step with values on a GPU is held and
        written at the next update, by when its values have long arrived (or, with PARITY_STEP_WRITER=thread,
        handed to the step writer's thread, `StepWriter`). At most one such step is pending: closing a step
        first writes the one before it.
        """
        record = self._current
        pending, scalars, copies = _device_values(record)
        early, self._early_transfer = self._early_transfer, None
        if early is not None and _same_objects(early[0], _carried(pending, scalars, copies)):
            transfer = early[1]  # launched at the update; nothing was added to the step since
        else:
            transfer = digest.Transfer(pending, scalars, copies)
        self._step += 1
        self._current = self._new_step()
        self._updated = False
        self._clip_seen = False
        self._drain_step_writer()
        if transfer.on_host:
            self._finish_step(record, transfer)
            return
        if self._write_at_update:
            self._finish_held()
            self._held = (record, transfer)
            return
        if self._step_writer is None:
            self._step_writer = StepWriter(self._finish_step)
        self._step_writer.put(record, transfer)

    def _launch_early(self) -> None:
        """At a GPU update, start the step's device-to-host copy while the GPU is still busy with the
        update: the host work it takes is then hidden, where at the next step's first event it runs while
        a step-synchronised GPU waits. `_write_step` uses it if nothing was added to the step since."""
        pending, scalars, copies = _device_values(self._current)
        self._early_transfer = (_carried(pending, scalars, copies), digest.Transfer(pending, scalars, copies))

    def _drain_step_writer(self) -> None:
        """Wait until every step handed to the step writer is written (or held for the next update)."""
        self._finish_held()
        if self._step_writer is not None:
            self._step_writer.drain()

    def _finish_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._finish_step(*held)

    def _write(self, record: dict[str, Any]) -> None:
        with self._write_lock:
            self._ensure_writer().write(record)

    def _finish_step(self, record: dict[str, Any], transfer: digest.Transfer) -> None:
        """Write a closed step with its device values; if they cannot be had (a failed device), write
        what the host knows, with the device-side fields empty, and note the failure."""
        try:
            host = iter(transfer.finish())
        except Exception:
            self.capture_failed(f"step {record['step']}: device values")
            self._write(_without_device_values(record))
            return
        norm = record["grad_norm"]
        losses = [{**digest.float_bits(next(host))} for _ in record["losses"]]
        for entry, out in zip(record["losses"], losses):
            if entry["scale"] is not None:
                out["scale"] = digest.float_bits(next(host))
        record["losses"] = losses
        if norm is not None:
            record["grad_norm"] = {**digest.float_bits(next(host)), "source": norm["source"]}
        record["batch"] = [f"{module}:{p.value}" for module, p in record["batch"]]
        record["loader"] = [p.value for p in record["loader"]]
        self._resolve_data_fields(record)
        for key in ("params", "optim_state"):
            if record[key] is not None:
                record[key] = record[key].value
        sums = record[schema.F_PARAM_SUMS]
        if sums is not None:
            record[schema.F_PARAM_SUMS] = dict(zip(sums[0], map(digest.hex64, sums[1].sums)))
        self._write(record)

    def event(self, name: str) -> None:
        if dynamo_tracing():
            return
        if self._updated and name in schema.OPENING_EVENTS:
            self._write_step()
        if self._first_event_time is None:
            self._first_event_time = time.perf_counter()
            if metadata.cuda_in_use():
                torch.cuda.reset_peak_memory_stats()
        self._current["events"].append(name)

    # -- what the patches report ---------------------------------------------------------------
    def on_loss(self, loss: torch.Tensor, scale: torch.Tensor | None) -> None:
        if dynamo_tracing():
            return
        if loss.numel() == 1:
            scale = scale.detach().clone().reshape(()) if isinstance(scale, torch.Tensor) else scale
            self._current["losses"].append({"tensor": loss.detach().clone().reshape(()), "scale": scale})

    def on_clip(self, total_norm: torch.Tensor | float | None, max_norm: float, norm_type: float) -> None:
        """The step's clip: the total norm before clipping (a tensor, or a float from a framework) and
        the threshold. A framework that clipped without telling the norm (None) still records the threshold."""
        if dynamo_tracing():
            return
        self._current["clip"] = {"max_norm": digest.json_float(float(max_norm)), "norm_type": digest.json_float(float(norm_type))}
        if isinstance(total_norm, (int, float)):
            total_norm = torch.tensor(float(total_norm), dtype=torch.float64)
        if isinstance(total_norm, torch.Tensor):
            self._current["grad_norm"] = {"tensor": total_norm.detach().clone().reshape(()), "source": "clip_grad_norm_"}
        self._clip_seen = True

    def on_batch(self, tensors: list[torch.Tensor], module: str) -> None:
        if dynamo_tracing():
            return
        self._use_fetched()
        if tensors and self.config.digests_at(self._step):
            self._current["batch"].append((module, digest.PendingDigest(tensors, weighted=True)))

    def on_loader_batch(self, batch: Any, epoch: int | None) -> None:
        # Held until a training forward uses it: a batch fetched and dropped (a resumed run skipping
        # what it already consumed) is not data this step trained on; the last fetch before a forward is.
        tensors = [t for t in iter_tensors(batch) if not t.requires_grad]
        self._fetched = [LoaderBatch(batch, tensors, epoch, self.config.digests_at(self._step))]

    def on_loader_window(self, batches: list[Any]) -> None:
        """A framework fetched one update's micro-batches before running any of them (HF Trainer's
        accumulation window): all of them, not only the last fetch, are what the next forwards train on."""
        epoch = self._fetched[-1].epoch if self._fetched else None
        with_digests = self.config.digests_at(self._step)
        self._fetched = [LoaderBatch(b, [t for t in iter_tensors(b) if not t.requires_grad], epoch, with_digests)
                         for b in batches]

    def on_framework_config(self, where: str, value: Any) -> None:
        """A framework's own configuration object (TrainingArguments, accelerate state), named `where`."""
        self._framework_configs[where] = value

    def _named_configs(self) -> dict[str, Any]:
        # A shim may register a function: framework state is then read at the first update, as found there.
        return {where: value() if isinstance(value, functools.partial) else value
                for where, value in self._framework_configs.items()}

    def _use_fetched(self) -> None:
        fetched, self._fetched = self._fetched, []
        for batch in fetched:
            self._use_batch(batch)

    def _use_batch(self, fetched: LoaderBatch) -> None:
        record = self._current
        if record[schema.F_EPOCH] is None:  # the epoch of the loader that produced the step's first batch
            record[schema.F_EPOCH] = fetched.epoch
        if fetched.loader is None:
            return
        record["loader"].append(fetched.loader)
        record[schema.F_FIELDS].append(fetched.fields)
        # Until _write_step resolves them, samples and labels hold the per-batch device-side parts.
        if fetched.samples is not None:
            record[schema.F_SAMPLES] = [*(record[schema.F_SAMPLES] or []), fetched.samples]
        if fetched.labels is not None:
            record[schema.F_LABELS] = [*(record[schema.F_LABELS] or []), fetched.labels]

    @staticmethod
    def _resolve_data_fields(record: dict[str, Any]) -> None:
        """Turn the step's resolved per-batch parts into the schema's fields, samples and labels."""
        record[schema.F_FIELDS] = [{name: p.value for name, p in fields.items()} for fields in record[schema.F_FIELDS]]
        samples = record[schema.F_SAMPLES]
        if samples is not None:
            record[schema.F_SAMPLES] = digest.hex64(sum(int(part.value) for part in samples))
        labels = record[schema.F_LABELS]
        if labels is not None:
            record[schema.F_LABELS] = label_histogram(labels)

    def on_root(self, module: torch.nn.Module) -> None:
        """A grad-enabled forward of a model root: remembered (weakly) for the structure record."""
        if dynamo_tracing() or self._context_recorded:
            return
        key = id(module)
        known = self._roots.get(key)
        if known is None or known() is not module:
            self._roots[key] = weakref.ref(module)

    def on_mode(self, module: torch.nn.Module) -> None:
        """The step's first grad-enabled root forward: which modules were in eval mode."""
        if dynamo_tracing() or self._current[schema.F_MODE] is not None:
            return
        self._current[schema.F_MODE] = structure.training_mode(module)

    def _record_run_context(self, optimizer: torch.optim.Optimizer) -> None:
        """Model structure, config objects and source files, once, at the first update."""
        self._context_recorded = True
        roots = [m for m in (ref() for ref in self._roots.values()) if m is not None]
        self._roots.clear()
        self._param_names = _parameter_names(roots)
        caller = sys._getframe(1)
        collectors = (
            (schema.META_MODEL, lambda: structure.describe_model(roots, _optimizer_params(optimizer))),
            (schema.META_CONFIG_OBJECTS, lambda: settings.find_config_objects(caller, self._named_configs())),
            (schema.META_SOURCES, sources.collect_sources),
            (schema.META_PARAM_LAYOUT, lambda: _parameter_layout(_optimizer_params(optimizer),
                                                                 self._sum_names(_optimizer_params(optimizer)))),
        )
        for key, collect in collectors:
            try:
                self.meta(key, collect())
            except Exception:
                self.capture_failed(key)

    def before_update(self, optimizer: torch.optim.Optimizer) -> None:
        if dynamo_tracing():
            return
        if not self._context_recorded:
            self._record_run_context(optimizer)
        self._current["groups"] = group_hyperparameters(optimizer)
        if not self._clip_seen and self.config.level != schema.LEVEL_MINIMAL:
            grads = [p.grad for p in _optimizer_params(optimizer) if p.grad is not None]
            if grads:
                self._current["grad_norm"] = {"tensor": _total_norm(grads), "source": "parity"}

    def _sum_names(self, params: list[torch.Tensor]) -> list[str]:
        """One distinct key per parameter for `param_sums`: its model name, else "#i" (optimizer order)."""
        known = self._sum_names_for
        if known is not None and len(known[0]) == len(params) and all(a is b for a, b in zip(known[0], params)):
            return known[1]
        names: list[str] = []
        seen: set[str] = set()
        for i, p in enumerate(params):
            name = self._param_names.get(id(p), f"#{i}")
            name = name if name not in seen else f"#{i}"
            seen.add(name)
            names.append(name)
        self._sum_names_for = (list(params), names)
        return names

    def after_update(self, optimizer: torch.optim.Optimizer, skipped: bool = False) -> None:
        if dynamo_tracing():
            return
        record = self._current
        record["skipped"] = skipped
        if self.config.digests_at(self._step):
            params = _optimizer_params(optimizer)
            tensors, scalars = _optimizer_state_tensors(optimizer)
            record["params"], record["optim_state"], sums = digest.state_digests(self._sum_plans, params, tensors, scalars)
            record[schema.F_PARAM_SUMS] = (self._sum_names(params), sums)
            record["rng"] = rng_digests()
        now = time.perf_counter()
        start = self._last_update_end if self._last_update_end is not None else self._first_event_time or now
        record["wall_ms"] = round((now - start) * 1e3, 4)
        self._last_update_end = now
        if metadata.cuda_in_use():
            # torch.cuda.max_memory_allocated flattens all ~160 allocator statistics into a new dict first:
            # a few hundred microseconds of host time every step; the nested form is read as it comes.
            stats = torch.cuda.memory_stats_as_nested_dict()
            record["peak_mem_bytes"] = int(stats.get("allocated_bytes", {}).get("all", {}).get("peak", 0))
        else:
            record["peak_mem_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self._updated = True
        self._first_event_time = None
        if _copy_at_update():
            self._launch_early()
        self._finish_held()  # the step before this one, its values long on the host by now
        if self.update_listeners:
            params = _optimizer_params(optimizer)
            names = self._sum_names(params)
            for listener in self.update_listeners:
                listener(record["step"], params, names)


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of the per-gradient 2-norms, in the gradients' order. On one CUDA device the per-tensor
    norms come from one multi-tensor kernel (as `clip_grad_norm_` takes them) instead of one launch each."""
    grads = [g.detach() for g in grads]
    device = grads[0].device
    if device.type == "cuda" and all(g.device == device for g in grads):
        norms = torch._foreach_norm(grads, 2.0)
    else:
        norms = [torch.linalg.vector_norm(g, 2.0).to(device) for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms), 2.0)


def _copy_at_update() -> bool:
    """A step's values wait on a GPU, so their copy starts at the update (`_launch_early`). Its own function:
    the tests take the GPU path on the CPU through it, and capture_overhead.py's copy-at-close block turns it off."""
    return metadata.cuda_in_use()


def _device_values(record: dict[str, Any]) -> tuple[list[digest.PendingDigest], list[torch.Tensor], list[digest.HostCopy]]:
    """What a step record still holds on devices: pending digests, float scalars and integer copies."""
    sums = record[schema.F_PARAM_SUMS]
    pending = [*(p for _, p in record["batch"]), *record["loader"],
               *(x for x in (record["params"], record["optim_state"]) if x is not None),
               *([sums[1]] if sums is not None else []),
               *(p for fields in record[schema.F_FIELDS] for p in fields.values())]
    copies = [*(record[schema.F_SAMPLES] or []), *(part.bins for part in record[schema.F_LABELS] or [])]
    scalars = [x["tensor"] for x in record["losses"]] + [x["scale"] for x in record["losses"] if x["scale"] is not None]
    norm = record["grad_norm"]
    if norm is not None:
        scalars.append(norm["tensor"])
    return pending, scalars, copies


def _carried(*groups: list) -> tuple[Any, ...]:
    """The objects a transfer carries, held (so that no other object can take one's id meanwhile)."""
    return tuple(x for group in groups for x in group)


def _same_objects(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Nothing was added to a step or replaced in it since `a` was taken."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _without_device_values(record: dict[str, Any]) -> dict[str, Any]:
    """A step record whose device-side values never arrived: those fields empty, the rest as recorded."""
    return {**record, "losses": [], "grad_norm": None, "batch": [], "loader": [], "params": None, "optim_state": None,
            schema.F_PARAM_SUMS: None, schema.F_FIELDS: [], schema.F_SAMPLES: None, schema.F_LABELS: None}


def describe_exception(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return f"{type(exc).__name__}: {exc}"


def iter_tensors(obj: Any) -> Iterable[torch.Tensor]:
    """Every tensor in a nested structure of args/kwargs, in a stable order."""
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(obj)
    return [x for x in leaves if isinstance(x, torch.Tensor)]


__all__ = ["Recorder", "describe_exception", "dynamo_tracing", "iter_tensors", "rng_digests", "group_hyperparameters"]
