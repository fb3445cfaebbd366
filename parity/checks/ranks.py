"""Every rank of a run: replica consistency within one run, each rank of two runs, sharded against unsharded.

Three pure functions of recorded runs (no I/O, no printing):
  * `check_rank_consistency(run)`: data-parallel replicas must hold bit-identical parameters (and
    optimizer state) after every update, the cheap tripwire Megatron runs across its replicas;
  * `compare_each_rank(a, b)`: `compare_traces` on every rank of two runs of one world size;
  * `check_sharded(a, b)`: the same training recorded under two layouts (1 process against 2 FSDP2
    ranks): the mean of the ranks' losses, the learning rate and the layout-independent parameter digest
    (per-parameter element sums of the local shards, summed over the ranks that shard them).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from parity.checks.base import Finding, Tolerance, not_compared, rel_diff
from parity.checks.compare import Comparison, compare_traces
from parity.exceptions import ConfigError, TraceError
from parity.trace import schema
from parity.trace.reader import Run, Trace

CONSISTENCY = "rank_consistency"
SHARDED = "sharded"
_MASK64 = (1 << 64) - 1

#: Loss tolerance for a sharded run against an unsharded one when none is given. Measured, not guessed, with
#: tests/distributed/fsdp_train.py (MLP 16-32-32-5, AdamW lr 1e-2, global batch 32; CPU, torch 2.13, gloo):
#: 1 process against 2 FSDP2 ranks, whose reduce-scatter adds two half-batch gradients where one backward
#: sums the whole batch, and whose recorded loss is the mean of two half-batch means. Worst relative
#: difference of the per-step loss over the run (float32 ulps in brackets):
#:     seed        0               1               2
#:     8 steps     3.9e-8 (0.5)    8.0e-8 (1.0)    1.2e-7 (1.5)
#:     40 steps    2.7e-7 (2.8)    2.0e-7 (2.5)    1.8e-7 (2.0)
#: The drift grows with the run (parameters part in their last bits from step 0), so the tolerance is 10x
#: the worst 40-step value. An lr changed by 10% (1e-2 -> 1.1e-2) moves the loss by rel 4.7e-4 to 8e-3 from
#: step 1 on: 150x beyond it. Longer runs drift further; give --tolerance for them.
SHARDED_LOSS_TOLERANCE = Tolerance(rel=3e-6)


def _is_shard(placement: str) -> bool:
    # DTensor placements print as "S(0)" (Shard), "R" (Replicate), "P(sum)" (Partial); older torch spells them out.
    return placement.startswith(("S(", "Shard(", "_S("))


def sharded_names(trace: Trace) -> set[str]:
    """Names of the parameters this rank holds only a shard of (from the `param_layout` meta record)."""
    layout = trace.meta.get(schema.META_PARAM_LAYOUT) or {}
    if not isinstance(layout, dict):
        raise TraceError(f"{trace.path}: meta {schema.META_PARAM_LAYOUT}: expected an object, got {type(layout).__name__}")
    return {name for name, spec in layout.items()
            if any(_is_shard(str(p)) for p in (spec or {}).get(schema.LAYOUT_PLACEMENTS, []))}


def _param_sums(trace: Trace, step: dict[str, Any]) -> dict[str, int] | None:
    """A step's `param_sums` as integers; the reader does not validate this field, so it is checked here."""
    sums = step.get(schema.F_PARAM_SUMS)
    if sums is None:
        return None
    try:
        return {str(name): int(value, 16) for name, value in sums.items()}
    except (AttributeError, TypeError, ValueError):
        raise TraceError(f"{trace.path}: step {step.get(schema.F_STEP)}: {schema.F_PARAM_SUMS}: expected "
                         "{name: hexadecimal digest}") from None


# -- consistency of the replicas of one run -------------------------------------------------------
def _replica_value(trace: Trace, step: dict[str, Any], channel: str, replicated: set[str] | None) -> Any:
    """What every replica must agree on at one step: the channel's digest, or, where some parameters are
    sharded, the element sums of the replicated ones only."""
    if replicated is None:
        return step.get(channel)
    sums = _param_sums(trace, step)
    return None if sums is None else tuple(sorted((n, v) for n, v in sums.items() if n in replicated))


def check_rank_consistency(run: Run) -> Finding:
    """IDENTICAL when every rank holds the same parameters and optimizer state after every update; DIFFERENT
    names the first step, the ranks that part from the rest and (where recorded) the parameters."""
    ranks = sorted(run.traces)
    if len(ranks) < 2:
        return not_compared(CONSISTENCY, f"one rank ({ranks[0]}): no replicas to compare")
    traces = [run.traces[r] for r in ranks]
    sharded = set().union(*(sharded_names(t) for t in traces))
    replicated = None
    if sharded:
        names = set().union(*(set(_param_sums(t, s) or {}) for t in traces for s in t.steps[:1]))
        replicated = names - sharded
        if not replicated:
            return not_compared(CONSISTENCY, f"every parameter is sharded across the ranks ({len(sharded)}, e.g. "
                                             f"{min(sharded)}: FSDP2/DTensor), so replicas legitimately differ; "
                                             "compare the run with an unsharded one instead (`--sharded`)")
    channels = [schema.F_PARAMS] if replicated is not None else [schema.F_PARAMS, schema.F_OPTIM_STATE]
    n = min(len(t.steps) for t in traces)
    compared = 0
    for i in range(n):
        steps = [t.steps[i] for t in traces]
        for channel in channels:
            values = [_replica_value(t, s, channel, replicated) for t, s in zip(traces, steps)]
            if any(v is None for v in values):
                continue  # not digested at this step (capture level every:N or minimal)
            compared += channel == schema.F_PARAMS
            if len(set(values)) > 1:
                return _inconsistent(ranks, traces, steps, values, channel, compared)
    evidence: dict[str, Any] = {"ranks": ranks, "steps_compared": compared,
                                "strength": "exact bits (sum64 digest per rank)" if replicated is None else
                                f"exact bits (element sums of the {len(replicated)} replicated parameters)"}
    if sharded:
        evidence["sharded_parameters"] = sorted(sharded)
    if compared == 0:
        return not_compared(CONSISTENCY, "no parameter digests on every rank (capture level minimal?)")
    lengths = {r: len(t.steps) for r, t in zip(ranks, traces)}
    if len(set(lengths.values())) > 1:
        evidence["steps_per_rank"] = lengths
        return Finding(CONSISTENCY, schema.DIFFERENT, f"the ranks recorded different numbers of updates: {lengths}",
                       n, evidence)
    what = "parameters and optimizer state" if replicated is None else "replicated parameters"
    return Finding(CONSISTENCY, schema.IDENTICAL, f"{what} bit-identical on all {len(ranks)} ranks after all {compared} "
                                                  "compared updates", None, evidence)


def _inconsistent(ranks: list[int], traces: list[Trace], steps: list[dict], values: list[Any], channel: str,
                  compared: int) -> Finding:
    groups: dict[Any, list[int]] = {}
    for rank, value in zip(ranks, values):
        groups.setdefault(value, []).append(rank)
    # The majority holds the reference copy; on a tie, the group with rank 0 (the rank checkpoints come from).
    reference = max(groups.values(), key=lambda g: (len(g), -g[0]))
    odd = [r for r in ranks if r not in reference]
    step = steps[0].get(schema.F_STEP, 0)
    evidence: dict[str, Any] = {"channel": channel, "ranks": ranks, "odd_ranks": odd, "reference_ranks": reference,
                                "digests": {str(r): v for r, v in zip(ranks, values) if isinstance(v, str)},
                                "steps_compared": compared}
    sums = [_param_sums(t, s) for t, s in zip(traces, steps)]
    if all(s is not None for s in sums):
        names = sorted({n for s in sums for n in s if len({x.get(n) for x in sums}) > 1})
        evidence["parameters"] = names
    where = f" in {', '.join(evidence['parameters'][:5])}" if evidence.get("parameters") else ""
    what = "parameters" if channel == schema.F_PARAMS else "optimizer state"
    return Finding(CONSISTENCY, schema.DIFFERENT,
                   f"replicas differ after step {step}: rank{'s' if len(odd) > 1 else ''} "
                   f"{', '.join(map(str, odd))} hold{'' if len(odd) > 1 else 's'} other {what} than rank"
                   f"{'s' if len(reference) > 1 else ''} {', '.join(map(str, reference))}{where}", step, evidence)


# -- two runs, rank by rank ----------------------------------------------------------------------
def compare_each_rank(baseline: Run, candidate: Run, **options: Any) -> dict[int, Comparison]:
    """`compare_traces` on every rank (options are passed through); runs of different world sizes are refused."""
    ranks_a, ranks_b = sorted(baseline.traces), sorted(candidate.traces)
    if ranks_a != ranks_b:
        raise ConfigError(f"{baseline.path} has ranks {ranks_a}, {candidate.path} has ranks {ranks_b}: rank-by-rank "
                          "comparison needs one world size; compare a sharded run with an unsharded one with --sharded",
                          docs="README.md#commands")
    return {r: compare_traces(baseline.traces[r], candidate.traces[r], **options) for r in ranks_a}


# -- one training under two layouts -------------------------------------------------------------
def _global_view(run: Run) -> tuple[list[float | None], list[Any], list[dict[str, int] | None], int]:
    """Per step: the mean of the ranks' first losses, rank 0's learning rates, and each parameter's
    layout-independent sum (shards summed over ranks, replicated parameters taken from rank 0)."""
    traces = [run.traces[r] for r in sorted(run.traces)]
    sharded = set().union(*(sharded_names(t) for t in traces))
    n = min(len(t.steps) for t in traces)
    losses, lrs, sums = [], [], []
    for i in range(n):
        steps = [t.steps[i] for t in traces]
        values = [s[schema.F_LOSSES][0][schema.S_VALUE] if s.get(schema.F_LOSSES) else None for s in steps]
        # Ranks train on equal slices of the global batch, so the mean of their means is the global mean.
        losses.append(None if None in values else sum(float(v) for v in values) / len(values))
        lrs.append([g.get(schema.G_LR) for g in steps[0].get(schema.F_GROUPS) or []])
        per_rank = [_param_sums(t, s) for t, s in zip(traces, steps)]
        if any(p is None for p in per_rank):
            sums.append(None)
            continue
        sums.append({name: (sum(p.get(name, 0) for p in per_rank) & _MASK64) if name in sharded else value
                     for name, value in per_rank[0].items()})
    return losses, lrs, sums, n


def _signed_delta(a: int, b: int) -> int:
    """b - a as a signed 64-bit integer. Of two element sums it is the net count of last-bit steps the elements
    moved (a float's bits, read as an integer, step by one per ulp): a drift of a few ulps stays small, a
    different training shows as an enormous number. Opposite moves cancel, so it is a size, not a bound."""
    d = (b - a) & _MASK64
    return d - (1 << 64) if d >= 1 << 63 else d


def _float32_ulps(a: float, b: float) -> float:
    """|a - b| in units of the float32 spacing at b (the losses are float32; a mean of them need not be)."""
    return abs(a - b) / float(np.spacing(np.float32(abs(b)))) if math.isfinite(a - b) else math.inf


def check_sharded(baseline: Run, candidate: Run, tolerance: Tolerance | None = None) -> Finding:
    """Whether two runs of one training under different layouts (world sizes, sharding) train alike.

    IDENTICAL: every step's loss and every parameter's layout-independent sum equal bit for bit.
    EQUIVALENT: learning rates equal, and the losses within `tolerance` (default SHARDED_LOSS_TOLERANCE,
    measured); parameters then usually differ in their last bits, which the evidence says.
    DIFFERENT: an lr, a parameter name, the step count, or a loss beyond the tolerance."""
    tolerance = tolerance if tolerance is not None else SHARDED_LOSS_TOLERANCE
    loss_a, lr_a, sums_a, n_a = _global_view(baseline)
    loss_b, lr_b, sums_b, n_b = _global_view(candidate)
    n = min(n_a, n_b)
    per_step, worst_rel, worst_ulps, first_loss, beyond = [], 0.0, 0.0, None, None
    first_params, param_names, first_lr = None, [], None
    for i in range(n):
        if first_lr is None and lr_a[i] != lr_b[i]:
            first_lr = i
        row: dict[str, Any] = {"step": i, "baseline_loss": loss_a[i], "candidate_loss": loss_b[i]}
        if loss_a[i] is not None and loss_b[i] is not None:
            rel, ulps = rel_diff(loss_a[i], loss_b[i]), _float32_ulps(loss_b[i], loss_a[i])
            row.update(rel=rel, ulps=round(ulps, 2))
            worst_rel, worst_ulps = max(worst_rel, rel), max(worst_ulps, ulps)
            if rel and first_loss is None:
                first_loss = i
            if rel and beyond is None and not tolerance.allows(rel, math.ceil(ulps) if math.isfinite(ulps) else None):
                beyond = i
        if sums_a[i] is not None and sums_b[i] is not None:
            differs = sorted(k for k in sums_a[i].keys() | sums_b[i].keys() if sums_a[i].get(k) != sums_b[i].get(k))
            row["params_equal"] = not differs
            row["param_bits_moved"] = max((abs(_signed_delta(sums_a[i].get(k, 0), sums_b[i].get(k, 0)))
                                           for k in differs), default=0)
            if differs and first_params is None:
                first_params, param_names = i, differs
        per_step.append(row)
    evidence: dict[str, Any] = {
        "world_sizes": [len(baseline.traces), len(candidate.traces)], "steps_compared": n, "tolerance": str(tolerance),
        "worst_rel": worst_rel, "worst_ulps": round(worst_ulps, 2),
        "worst_param_bits_moved": max((r.get("param_bits_moved", 0) for r in per_step), default=0), "first_loss_difference": first_loss,
        "first_params_difference": first_params, "parameters_differing": param_names[:20], "per_step": per_step,
        "strength": "loss: mean of the ranks' losses (equal local batches), within tolerance; params: element sums "
                    "of local shards summed over the ranks that shard them, exact bits"}
    if n == 0:
        return not_compared(SHARDED, "no steps on both sides")
    if all(s is None for s in sums_a[:n]) or all(s is None for s in sums_b[:n]):
        evidence["params"] = "not compared: a side has no param_sums (recorded before they existed, or level minimal)"
    names_a = next((set(s) for s in sums_a if s), set())
    names_b = next((set(s) for s in sums_b if s), set())
    if names_a and names_b and names_a != names_b:
        evidence["parameter_names"] = {"baseline_only": sorted(names_a - names_b), "candidate_only": sorted(names_b - names_a)}
        return Finding(SHARDED, schema.DIFFERENT, "the two runs train different parameters (by name)", 0, evidence)
    if first_lr is not None:
        return Finding(SHARDED, schema.DIFFERENT, f"learning rates differ from step {first_lr}: "
                       f"{lr_a[first_lr]} vs {lr_b[first_lr]}", first_lr, evidence)
    if beyond is not None:
        row = per_step[beyond]
        return Finding(SHARDED, schema.DIFFERENT, f"loss differs beyond {tolerance} at step {beyond}: "
                       f"{row['baseline_loss']!r} vs {row['candidate_loss']!r} (rel {row['rel']:.3g}, "
                       f"{row['ulps']} ulp)", beyond, evidence)
    if n_a != n_b:
        return Finding(SHARDED, schema.DIFFERENT, f"step counts differ: {n_a} vs {n_b}", n, evidence)
    if first_loss is None and first_params is None:
        return Finding(SHARDED, schema.IDENTICAL, f"losses and layout-independent parameter sums bit-identical over "
                                                  f"{n} steps", None, evidence)
    params_note = (f"; parameters differ in their last bits from step {first_params} (expected: the gradient "
                   "reduction order changed)" if first_params is not None else "; parameters bit-identical")
    return Finding(SHARDED, schema.EQUIVALENT, f"losses within {tolerance} over {n} steps (worst rel {worst_rel:.2g}, "
                                               f"{worst_ulps:.1f} ulp){params_note}", first_loss, evidence)


def combined_status(statuses: Mapping[Any, str]) -> str:
    """The worst of several statuses, NOT_COMPARED left out unless nothing else is there."""
    known = [s for s in statuses.values() if s != schema.NOT_COMPARED]
    order = (schema.IDENTICAL, schema.EQUIVALENT, schema.DIFFERENT)
    return max(known, key=order.index) if known else schema.NOT_COMPARED
