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
     later addition, readable by every v2 reader (unknown step fields are free): step field
       `param_sums` (per-parameter element sums of local shards, the layout-independent digest), meta
       key `param_layout` (which parameters are DTensor shards); meta key `argparse_options` (each
       argparse dest's option strings, action kind, nargs, default and const: how to set it on a
       command line).
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

#: Record kind, in every record (one of RECORD_TYPES).
F_TYPE = "type"

# -- step fields (v1) -----------------------------------------------------------------------------
#: `step`: 0-based index of the optimizer update this record describes.
F_STEP = "step"
#: `events`: ordered event names (EV_*) of the step.
F_EVENTS = "events"
#: `losses`: [recorded scalar, with `scale` under GradScaler] for every tensor backward ran on.
F_LOSSES = "losses"
#: `groups`: every hyperparameter of every param group as this update used them ({G_LR: ..., ...}).
F_GROUPS = "groups"
#: `grad_norm`: recorded scalar plus `source` (clip_grad_norm_ or parity): the pre-clip total norm.
F_GRAD_NORM = "grad_norm"
#: `clip`: {CLIP_MAX_NORM, CLIP_NORM_TYPE} of the step's clip_grad_norm_ call, or None.
F_CLIP = "clip"
#: `batch`: ["<root module>:<wsum64>"] digests of the root forward's inputs.
F_BATCH = "batch"
#: `loader`: [wsum64] digests of the DataLoader batches the step trained on.
F_LOADER = "loader"
#: `params`: sum64 digest of every parameter the optimizer updates, after the update.
F_PARAMS = "params"
#: `optim_state`: sum64 digest of the optimizer's per-parameter state, after the update.
F_OPTIM_STATE = "optim_state"
#: `rng`: {"torch", "numpy", "python", "cuda"?: digest} after the update.
F_RNG = "rng"
#: `wall_ms`: time from the end of the previous update to the end of this one.
F_WALL_MS = "wall_ms"
#: `peak_mem_bytes`: peak device (or process) memory so far.
F_PEAK_MEM = "peak_mem_bytes"
#: `skipped`: GradScaler skipped this update (inf/NaN gradients).
F_SKIPPED = "skipped"

#: Keys of a recorded scalar (a loss or a gradient norm): exact bits in hex, dtype, value (JSON number
#: or "nan"/"inf"/"-inf"); a loss under GradScaler adds the scale, a gradient norm its source.
S_BITS, S_DTYPE, S_VALUE, S_SCALE, S_SOURCE = "bits", "dtype", "value", "scale", "source"
#: Spellings of non-finite values, wherever a float is recorded (JSON has no NaN or infinity).
V_NAN, V_INF, V_NEG_INF = "nan", "inf", "-inf"
#: Keys of `clip`.
CLIP_MAX_NORM, CLIP_NORM_TYPE = "max_norm", "norm_type"
#: Keys of a param group in `groups` that hold the learning rate (the rest are other hyperparameters).
G_LR, G_INITIAL_LR = "lr", "initial_lr"
#: Keys of `labels` (F_LABELS).
LABELS_FIELD, LABELS_HIST = "field", "hist"
#: Keys of `mode` (F_MODE).
MODE_ROOT, MODE_TRAINING, MODE_EVAL_MODULES, MODE_N_EVAL = "root", "training", "eval_modules", "n_eval"

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

#: `param_sums`: {parameter name: 16 hex digits} after the update, at the steps `params` is digested:
#:   each parameter's elements (of this rank's local shard under FSDP2/DTensor) read as signed integers
#:   of their own width and summed mod 2**64. Summed over ranks it equals the unsharded parameter's sum,
#:   so a sharded run and an unsharded one compare per parameter. Names are the model's own, with the
#:   wrappers' `module.` (DDP) and `_orig_mod.` (torch.compile) segments left out; "#i" (the optimizer's
#:   i-th parameter) where no forward named it.
F_PARAM_SUMS = "param_sums"

#: Every field of a step record, in the order the recorder creates them.
STEP_FIELDS = (F_TYPE, F_STEP, F_EVENTS, F_LOSSES, F_GROUPS, F_GRAD_NORM, F_CLIP, F_BATCH, F_LOADER, F_PARAMS,
               F_OPTIM_STATE, F_RNG, F_WALL_MS, F_PEAK_MEM, F_SKIPPED, F_FIELDS, F_SAMPLES, F_LABELS, F_EPOCH, F_MODE,
               F_PARAM_SUMS)

# -- meta records ---------------------------------------------------------------------------------
#: Fields of a meta record: which metadata it is (a META_* key) and its value.
M_KEY, M_VALUE = "key", "value"
#: The parsed argparse namespace: {dest: value}.
META_ARGPARSE = "argparse"
#: [{"class": "pkg.mod.Class", "defaults": {every hyperparameter, hard-coded ones included},
#:   "param_groups": int, "params": int}], one per optimizer constructed, in order.
META_OPTIMIZERS = "optimizers"
#: [{"class": "pkg.mod.Class", "state": {the scheduler's state_dict}}], one per scheduler constructed.
META_SCHEDULERS = "schedulers"
#: Numerics flags as they were when the process ended (a trainer may set them after capture starts).
META_NUMERICS_AT_END = "numerics_at_end"
#: [op name]: ops that have no deterministic kernel, met in deterministic mode.
META_NONDETERMINISTIC_OPS = "nondeterministic_ops"
#: [kind]: restores that a resume control swallowed (so a control that never fires can say why).
META_SKIPPED_CALLS = "skipped_calls"
#: {"where", "traceback"}: capture failed internally; fields after it may be missing.
META_CAPTURE_ERROR = "capture_error"
#: Keys of an entry of META_OPTIMIZERS / META_SCHEDULERS.
OPT_CLASS, OPT_DEFAULTS, OPT_PARAM_GROUPS, OPT_N_PARAMS = "class", "defaults", "param_groups", "params"
SCHED_STATE = "state"

# -- v2 meta keys ---------------------------------------------------------------------------------
#: {"roots": [{"class": "pkg.mod.Class", "modules": [[fqn, class name], ...],
#:   "params": [[name, [shape], dtype, requires_grad], ...], "buffers": [[name, [shape], dtype], ...],
#:   "n_params": int, "n_trainable": int}], "optimizer_only": [[shape, dtype, requires_grad], ...]}
#:   taken at the first optimizer update from the root modules seen in grad-enabled forwards.
META_MODEL = "model"
#: Keys of META_MODEL and of each of its roots (rows are lists, positions as documented above).
MODEL_ROOTS, MODEL_OPTIMIZER_ONLY = "roots", "optimizer_only"
ROOT_CLASS, ROOT_MODULES, ROOT_PARAMS, ROOT_BUFFERS = "class", "modules", "params", "buffers"
ROOT_N_PARAMS, ROOT_N_TRAINABLE = "n_params", "n_trainable"
#: [{"class", "batch_size", "shuffle", "sampler", "batch_sampler", "num_workers", "drop_last",
#:   "collate_fn", "pin_memory", "persistent_workers", "prefetch_factor", "timeout", "worker_init_fn",
#:   "generator_seed", "dataset": {"class", "len", "raw": {"ordered", "set", "n"} | None,
#:   "raw_error"?: why raw is None for an indexable dataset (its __getitem__ raised or was too slow),
#:   "attrs": {name: digest}}}], one per DataLoader constructed, in order. `attrs` of a wrapping
#:   dataset (Subset, ConcatDataset) include the inner ones' under dotted names ("dataset.features",
#:   "datasets.0.features"), and Subset's own "indices".
META_DATALOADERS = "dataloaders"
#: Keys of a META_DATALOADERS entry (its class, its dataset's description), and of the `raw` digests.
DL_CLASS, DL_DATASET = "class", "dataset"
DS_CLASS, DS_LEN, DS_RAW, DS_RAW_ERROR, DS_ATTRS = "class", "len", "raw", "raw_error", "attrs"
RAW_ORDERED, RAW_SET, RAW_N = "ordered", "set", "n"
#: {where: json value}: config dicts, dataclasses, namespaces, OmegaConf, TrainingArguments found in
#:   the trainer's module globals and in the frames that create the optimizer. `where` is e.g.
#:   "__main__.CONFIG" or "train_main:cfg".
META_CONFIG_OBJECTS = "config_objects"
#: {"root": common directory, "git": {root, commit, dirty} | None, "files": {relative path:
#:   {"module": name, "sha": hex, "functions": {qualname: hex}}}}: the trainer's own source files
#:   (not stdlib, not site-packages, not parity), hashed; functions hashed through their AST.
META_SOURCES = "sources"
#: Keys of META_SOURCES.
SRC_ROOT, SRC_GIT, SRC_FILES = "root", "git", "files"
#: Keys of one file of META_SOURCES' `files`.
FILE_MODULE, FILE_SHA, FILE_FUNCTIONS = "module", "sha", "functions"
#: {"torch": digest, "numpy": digest, "python": digest} just before the first training batch is fetched.
META_RNG_AT_FIRST_BATCH = "rng_at_first_batch"

#: {parameter name (as in F_PARAM_SUMS): {"placements": [str], "shape": [int], "local_shape": [int]}} for
#:   every parameter the optimizer updates that is a DTensor (FSDP2 shards: "Shard(dim=0)"), taken at the
#:   first update; {} when none is. Tells a sharded parameter from a replicated one whose shards look alike.
META_PARAM_LAYOUT = "param_layout"
LAYOUT_PLACEMENTS, LAYOUT_SHAPE, LAYOUT_LOCAL_SHAPE = "placements", "shape", "local_shape"

#: {dest: [{"options": [option strings], "action": ACTION_*, "nargs": argparse nargs (None, int, "?", "*", "+"),
#:   "default": json value, "const": json value}]}: every argparse action of the parsers that parsed the
#:   command line, one entry per action writing that dest (a `--x`/`--no-x` pair shares one dest); a
#:   positional has no option strings. Lets `parity attribute` set a recorded value back on a command line.
META_ARGPARSE_OPTIONS = "argparse_options"
#: Keys of one META_ARGPARSE_OPTIONS action.
ARG_OPTIONS, ARG_ACTION, ARG_NARGS, ARG_DEFAULT, ARG_CONST = "options", "action", "nargs", "default", "const"
#: Action kinds; any other action is recorded under its class name.
ACTION_STORE, ACTION_STORE_TRUE, ACTION_STORE_FALSE, ACTION_STORE_CONST = "store", "store_true", "store_false", "store_const"
ACTION_BOOLEAN_OPTIONAL, ACTION_APPEND, ACTION_COUNT = "boolean_optional", "append", "count"

#: Every meta key a recorder writes.
META_KEYS = (META_ARGPARSE, META_ARGPARSE_OPTIONS, META_OPTIMIZERS, META_SCHEDULERS, META_NUMERICS_AT_END, META_NONDETERMINISTIC_OPS,
             META_SKIPPED_CALLS, META_CAPTURE_ERROR, META_MODEL, META_DATALOADERS, META_CONFIG_OBJECTS, META_SOURCES,
             META_RNG_AT_FIRST_BATCH, META_PARAM_LAYOUT)

# -- header record --------------------------------------------------------------------------------
H_SCHEMA = "schema"                # SCHEMA_NAME
H_VERSION = "version"              # SCHEMA_VERSION of the writer
H_RANK = "rank"
H_PID = "pid"
H_LEVEL = "level"                  # capture level as given: full, every:N, minimal
H_SEED = "seed"                    # the seed parity set, or None
H_DETERMINISTIC = "deterministic"  # parity turned deterministic algorithms on
H_SKIP_LOADS = "skip_loads"        # load kinds turned into no-ops
H_DIGEST = "digest"                # digest algorithm version: digests compare only within one
H_RUN = "meta"                     # the process's context, keyed by RUN_*
#: Keys of the header's `meta` (the process as capture found it).
RUN_ARGV, RUN_CWD, RUN_PYTHON, RUN_TORCH, RUN_CUDA = "argv", "cwd", "python", "torch", "cuda"
RUN_DEVICE, RUN_PLATFORM, RUN_HOSTNAME, RUN_NUMERICS, RUN_ENV = "device", "platform", "hostname", "numerics", "env"
#: RUN_GIT is {"root", "commit", "dirty"}; RUN_LOAD the 1/5/15-minute load averages (also in the end record).
RUN_GIT, RUN_LOAD, RUN_CPUS = "git", "load", "cpus"
GIT_ROOT, GIT_COMMIT, GIT_DIRTY = "root", "commit", "dirty"

# -- end record -----------------------------------------------------------------------------------
E_STATUS, E_ERROR, E_STEPS, E_TRAILING_EVENTS, E_LOAD = "status", "error", "steps", "trailing_events", "load"

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
