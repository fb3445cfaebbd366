"""The trace schema: record kinds, field names and version, shared by writer, reader and checks.

Stdlib only, so that the injected capture code and the readers agree without importing torch.

Changelog of SCHEMA_VERSION:
  1 -- first version: header, meta, step and end records in JSON Lines; step records carry
       `batch` (root-module inputs) and `loader` (DataLoader batches) digests.
"""

from __future__ import annotations

SCHEMA_NAME = "parity.trace"
SCHEMA_VERSION = 1

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
)

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

# Check statuses, ordered from best to worst for verdict aggregation.
IDENTICAL = "IDENTICAL"
EQUIVALENT = "EQUIVALENT"
NOT_COMPARED = "NOT_COMPARED"
DIFFERENT = "DIFFERENT"
STATUSES = (IDENTICAL, EQUIVALENT, NOT_COMPARED, DIFFERENT)

# Channels in causal order, for first-divergence localisation. The recorded lr is the one the
# update of that step used, so it sits before the parameters it produced.
CHANNELS = ("config", "data", "loss", "grad_norm", "lr", "params", "optimizer_state")
