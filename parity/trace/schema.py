"""The trace schema: record kinds, field names and version, shared by writer, reader and checks.

Stdlib only, so that the injected capture code and the readers agree without importing torch.

Changelog of SCHEMA_VERSION:
  1 -- first version: header, meta, step and end records in JSON Lines; step records carry
       `batch` (root-module inputs) and `loader` (DataLoader batches) digests.
  2 -- data taken apart and the run's context: step fields `fields` (per batch field digests),
       `samples` (order-insensitive digest of the rows), `labels` (target-id histogram), `epoch`,
       `mode` (training mode at the grad-enabled forward); meta keys `model` (structure), `dataloaders`
       (every DataLoader setting, dataset class/length/raw-sample digests), `config_objects` (config
       dicts/dataclasses found without edits), `sources` (trainer source files, functions, git),
       `rng_at_first_batch`; header and end carry `load` (load average). Version 1 traces still read:
       their missing fields are NOT_COMPARED.
"""

from __future__ import annotations

SCHEMA_NAME = "parity.trace"
SCHEMA_VERSION = 2
#: Versions the reader accepts (older ones lack fields; checks then say NOT_COMPARED).
READABLE_VERSIONS = (1, 2)

#: File name of one process's trace inside a run directory.
TRACE_FILE_PATTERN = "trace-rank{rank}.jsonl"
TRACE_GLOB = "trace-rank*.jsonl"

# Record kinds (the "type" field of every JSON line).
HEADER = "header"
META = "meta"
STEP = "step"
END = "end"
RECORD_TYPES = (HEADER, META, STEP, END)

# Fields of a step record.
STEP_FIELDS = (
    "type",
    "step",
    "events",
    "losses",
    "groups",
    "grad_norm",
    "clip",
    "batch",
    "loader",
    "params",
    "optim_state",
    "rng",
    "wall_ms",
    "peak_mem_bytes",
    "skipped",
    "fields",
    "samples",
    "labels",
    "epoch",
    "mode",
)

# -- v2 step fields, documented once -----------------------------------------------------------
#: `fields`: list aligned with `loader` (one entry per DataLoader batch this step trained on):
#:   {field name: wsum64 digest}. Field names: dict keys, "0", "1", ... for tuple/list positions,
#:   attribute names for dataclasses/namedtuples, dotted for nested structures ("inputs.ids"); a bare
#:   tensor batch is field "0"; only tensors (no grad).
F_FIELDS = "fields"
#: `samples`: 16-hex-digit sum mod 2**64 of one digest per row (leading dimension) over every loader
#:   batch of the step, all fields of a row combined. Order-insensitive: summed per epoch by checks,
#:   "same samples, new order" keeps the sum, "different samples" changes it.
F_SAMPLES = "samples"
#: `labels`: {"field": name of the target field, "hist": {str(target id): count}} summed over the
#:   step's loader batches; absent (None) when no integer target field was found.
F_LABELS = "labels"
#: `epoch`: how many times the DataLoader that produced this step's batch had been iterated (0-based).
F_EPOCH = "epoch"
#: `mode`: at the step's first grad-enabled root forward: {"root": class name, "training": bool,
#:   "eval_modules": [names of submodules with training=False, at most 20], "n_eval": int}.
F_MODE = "mode"

# -- v2 meta keys ---------------------------------------------------------------------------------
#: {"roots": [{"class": "pkg.mod.Class", "modules": [[fqn, class name], ...],
#:   "params": [[name, [shape], dtype, requires_grad], ...], "buffers": [[name, [shape], dtype], ...],
#:   "n_params": int, "n_trainable": int}], "optimizer_only": [[shape, dtype, requires_grad], ...]}
#:   taken at the first optimizer update from the root modules seen in grad-enabled forwards.
META_MODEL = "model"
#: [{"class", "batch_size", "shuffle", "sampler", "batch_sampler", "num_workers", "drop_last",
#:   "collate_fn", "pin_memory", "persistent_workers", "prefetch_factor", "timeout", "worker_init_fn",
#:   "generator_seed", "dataset": {"class", "len", "raw": {"ordered", "set", "n"} | None,
#:   "raw_error"?: why raw is None for an indexable dataset (its __getitem__ raised or was too slow),
#:   "attrs": {name: digest}}}], one per DataLoader constructed, in order. `attrs` of a wrapping
#:   dataset (Subset, ConcatDataset) include the inner ones' under dotted names ("dataset.features",
#:   "datasets.0.features"), and Subset's own "indices".
META_DATALOADERS = "dataloaders"
#: {where: json value}: config dicts, dataclasses, namespaces, OmegaConf, TrainingArguments found in
#:   the trainer's module globals and in the frames that create the optimizer. `where` is e.g.
#:   "__main__.CONFIG" or "train_main:cfg".
META_CONFIG_OBJECTS = "config_objects"
#: {"root": common directory, "git": {root, commit, dirty} | None, "files": {relative path:
#:   {"module": name, "sha": hex, "functions": {qualname: hex}}}}: the trainer's own source files
#:   (not stdlib, not site-packages, not parity), hashed; functions hashed through their AST.
META_SOURCES = "sources"
#: {"torch": digest, "numpy": digest, "python": digest} just before the first training batch is fetched.
META_RNG_AT_FIRST_BATCH = "rng_at_first_batch"

# Capture levels: what a step record holds.
LEVEL_FULL = "full"          # every field, every step
LEVEL_EVERY = "every"        # digests every N steps (`every:N`), scalars every step
LEVEL_MINIMAL = "minimal"    # losses, learning rates and events only
LEVELS = (LEVEL_FULL, LEVEL_EVERY, LEVEL_MINIMAL)

# Event names: the loop order is data.
EV_DATA = "next(batch)"
EV_DATA_NO_GRAD = "next(batch)[no_grad]"
EV_ZERO_GRAD = "zero_grad"
EV_FORWARD = "forward"
EV_FORWARD_NO_GRAD = "forward[no_grad]"
EV_BACKWARD = "backward"
EV_CLIP = "clip_grad_norm"
EV_OPT_STEP = "optimizer.step"
EV_SCHED_STEP = "scheduler.step"
EV_SCALER_SCALE = "scaler.scale"
EV_SCALER_UNSCALE = "scaler.unscale_"
EV_SCALER_STEP = "scaler.step"
EV_SCALER_UPDATE = "scaler.update"
EV_SAVE = "save"
EV_TRAIN_MODE = "train()"
EV_EVAL_MODE = "eval()"

#: Events that start the next update: after an optimizer step, the first of these opens a new step.
OPENING_EVENTS = frozenset({EV_DATA, EV_ZERO_GRAD, EV_FORWARD, EV_BACKWARD, EV_SCALER_SCALE})

#: Events that cannot change what the optimizer sees: shown in reports, never a verdict by themselves.
INERT_EVENTS = frozenset({EV_SAVE, EV_FORWARD_NO_GRAD, EV_DATA_NO_GRAD, EV_TRAIN_MODE, EV_EVAL_MODE})

# End-record statuses.
END_OK = "ok"
END_EXCEPTION = "exception"
#: The process ended on SIGTERM or SIGINT (forwarded by `parity record`, or Ctrl-C).
END_INTERRUPTED = "interrupted"

# Check statuses, ordered from best to worst for verdict aggregation.
IDENTICAL = "IDENTICAL"
EQUIVALENT = "EQUIVALENT"
NOT_COMPARED = "NOT_COMPARED"
DIFFERENT = "DIFFERENT"
STATUSES = (IDENTICAL, EQUIVALENT, NOT_COMPARED, DIFFERENT)

# Channels in causal order, for first-divergence localisation. The recorded lr is the one the
# update of that step used, so it sits before the parameters it produced.
CHANNELS = ("config", "model", "data", "mode", "loss", "grad_norm", "lr", "params", "optimizer_state")
