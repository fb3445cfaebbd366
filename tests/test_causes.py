"""Data taken apart, model structure, training mode and the ranked causes built from them.

Traces are synthetic: each factory below writes only the fields one decision needs, so every test
plants exactly one kind of change and asserts the category parity names first.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from parity.checks.causes import CATEGORIES, Cause
from parity.checks.compare import compare_traces
from parity.checks.data import check_data
from parity.checks.model import check_model
from parity.checks.train_mode import check_train_mode
from parity.trace import schema
from parity.trace.reader import Trace

STEPS = 6
PER_EPOCH = 3


def _float_bits(x: float) -> dict[str, Any]:
    import struct

    return {"bits": f"{struct.unpack('<Q', struct.pack('<d', x))[0]:016x}", "dtype": "float64", "value": x}


def _model(head: int = 3, layernorm: bool = False, frozen: bool = False) -> dict[str, Any]:
    modules = [["", "Net"], ["encoder", "Sequential"], ["encoder.0", "Linear"], ["head", "Linear"]]
    params = [["encoder.0.weight", [8, 4], "torch.float32", not frozen], ["head.weight", [head, 8], "torch.float32", True]]
    if layernorm:
        modules.insert(3, ["encoder.1", "LayerNorm"])
        params.insert(1, ["encoder.1.weight", [8], "torch.float32", True])
    n = sum(__import__("math").prod(p[1]) for p in params)
    return {"roots": [{"class": "pkg.model.Net", "modules": modules, "params": params, "buffers": [], "n_params": n,
                       "n_trainable": n}], "optimizer_only": []}


def _dataset(rows: str = "rows-a", vocab: str = "vocab-a", raw: str = "raw-a") -> list[dict[str, Any]]:
    return [{"class": "torch.utils.data.dataloader.DataLoader", "batch_size": 4, "shuffle": True, "num_workers": 0,
             "dataset": {"class": "pkg.data.Table", "len": 12, "attrs": {"rows": rows, "label_ids": vocab},
                         "raw": {"ordered": raw + "-o", "set": raw + "-s", "n": 12}}}]


def _step(i: int, *, features: str = "f", labels: str = "l", hist: dict | None = None, samples: int | None = None,
          loss: float | None = None, training: bool = True, lr: float = 0.1) -> dict[str, Any]:
    fields = {"features": f"{features}{i}", "label": f"{labels}{i}"}
    return {"type": schema.STEP, "step": i, "events": ["next(batch)", "zero_grad", "forward", "backward", "optimizer.step"],
            "loader": [f"{features}{labels}{i}"], "batch": [f"Net:{features}{labels}{i}"],
            schema.F_FIELDS: [fields], schema.F_SAMPLES: f"{(samples if samples is not None else 1000 + i):016x}",
            schema.F_LABELS: {"field": "label", "hist": hist or {"0": 2, "1": 1, "2": 1}},
            schema.F_EPOCH: i // PER_EPOCH,
            schema.F_MODE: {"root": "Net", "training": training, "eval_modules": [] if training else ["", "drop"],
                            "n_eval": 0 if training else 2},
            "losses": [_float_bits(loss if loss is not None else 2.0 - 0.1 * i)], "groups": [{"lr": lr}],
            "params": f"p{i}", "optim_state": f"s{i}", "skipped": False}


def _trace(steps: list[dict[str, Any]] | None = None, *, model: dict | None = None, loaders: list | None = None,
           config: dict | None = None, rng: str = "r0", optimizer_lr: float = 0.1) -> Trace:
    header = {"type": schema.HEADER, "schema": schema.SCHEMA_NAME, "version": schema.SCHEMA_VERSION, "rank": 0,
              "meta": {"git": None}}
    meta = {schema.META_MODEL: model or _model(), schema.META_DATALOADERS: loaders or _dataset(),
            schema.META_CONFIG_OBJECTS: {"__main__.CONFIG": config or {"lr": 0.1, "aug_noise": 0.1, "out_dir": "runs/a"}},
            schema.META_RNG_AT_FIRST_BATCH: {"torch": rng, "numpy": "n", "python": "p"},
            "optimizers": [{"class": "torch.optim.adamw.AdamW", "defaults": {"lr": optimizer_lr}}]}
    return Trace(path=Path("t.jsonl"), header=header, meta=meta, steps=steps or [_step(i) for i in range(STEPS)],
                 end={"type": schema.END, "status": schema.END_OK, "steps": STEPS})


def _top(baseline: Trace, candidate: Trace) -> Cause:
    c = compare_traces(baseline, candidate)
    assert c.verdict == schema.DIFFERENT, [(f.name, f.status) for f in c.findings]
    return c.causes[0]


# -- the data check tells the kinds apart ---------------------------------------------------------

def test_re_encoded_labels_are_a_label_mapping_change() -> None:
    cand = _trace([_step(i, labels="m", hist={"2": 2, "0": 1, "1": 1}) for i in range(STEPS)],
                  loaders=_dataset(vocab="vocab-b"))
    f = check_data(_trace(), cand)
    assert f.status == schema.DIFFERENT and f.evidence["kind"] == "labels"
    assert f.evidence["fields_differing"] == ["label"] and "label mapping" in f.evidence["how"]


def test_changed_targets_with_other_counts_are_labels_but_not_a_mapping() -> None:
    cand = _trace([_step(i, labels="m", hist={"0": 4}) for i in range(STEPS)])
    f = check_data(_trace(), cand)
    assert f.evidence["kind"] == "labels" and "label mapping" not in f.evidence["how"]


def test_different_prepared_rows_are_data_content() -> None:
    cand = _trace([_step(i, features="g", labels="m", samples=7 + i) for i in range(STEPS)],
                  loaders=_dataset(rows="rows-b", vocab="vocab-b", raw="raw-b"))
    f = check_data(_trace(), cand)
    assert f.evidence["kind"] == "data_content" and "loader 0: rows" in f.evidence["how"]


def test_same_samples_per_epoch_in_another_order_is_data_order() -> None:
    # Per epoch the sums of the order-insensitive sample digests match; the batches do not.
    base = _trace([_step(i, samples=10 * (i + 1)) for i in range(STEPS)])
    swapped = [20, 10, 30, 60, 40, 50]
    cand = _trace([_step(i, features="g", labels="m", samples=swapped[i]) for i in range(STEPS)])
    f = check_data(base, cand)
    assert f.evidence["kind"] == "data_order" and f.evidence["epochs_with_same_samples"] == 2


def test_same_prepared_data_different_items_is_augmentation() -> None:
    cand = _trace([_step(i, features="g", samples=77 + i) for i in range(STEPS)], loaders=_dataset(raw="raw-b"))
    f = check_data(_trace(), cand)
    assert f.evidence["kind"] == "augmentation" and "transform" in f.evidence["how"]


def test_same_dataset_different_batches_is_augmentation_or_streams() -> None:
    cand = _trace([_step(i, features="g", samples=77 + i) for i in range(STEPS)])
    f = check_data(_trace(), cand)
    assert f.evidence["kind"] == "augmentation" and "random streams" in f.evidence["how"]


def test_a_dataset_setting_attribute_is_not_prepared_data() -> None:
    loaders = _dataset(raw="raw-b")
    loaders[0]["dataset"]["attrs"]["cfg"] = "other-config"
    cand = _trace([_step(i, features="g", samples=77 + i) for i in range(STEPS)], loaders=loaders)
    assert check_data(_trace(), cand).evidence["kind"] == "augmentation"


# -- model structure ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "kind", "name"), [
    (dict(head=4), "parameter shape changed", "head.weight"),
    (dict(layernorm=True), "module added", "encoder.1"),
    (dict(frozen=True), "frozen", "encoder.0.weight"),
])
def test_model_structure_changes_are_named(change: dict, kind: str, name: str) -> None:
    f = check_model(_trace(), _trace(model=_model(**change)))
    assert f.status == schema.DIFFERENT and f.first_divergent_step == 0
    assert any(ch["kind"] == kind and ch["name"] == name for ch in f.evidence["changes"]), f.evidence["changes"]


def test_a_changed_module_setting_is_a_structure_change() -> None:
    base, fork = _model(), _model()
    base["roots"][0]["modules"].append(["drop", "Dropout", "p=0.1, inplace=False"])
    fork["roots"][0]["modules"].append(["drop", "Dropout", "p=0.2, inplace=False"])
    f = check_model(_trace(model=base), _trace(model=fork))
    assert f.status == schema.DIFFERENT and "drop p=0.1, inplace=False -> p=0.2, inplace=False" in f.summary


def test_a_renamed_root_class_with_the_same_contents_is_the_same_model() -> None:
    renamed = _model()
    renamed["roots"][0]["class"] = "fork.model.Net"
    renamed["roots"][0]["modules"][0] = ["", "ForkNet"]
    assert check_model(_trace(), _trace(model=renamed)).status == schema.IDENTICAL


def test_no_structure_recorded_is_not_compared() -> None:
    old = _trace()
    del old.meta[schema.META_MODEL]
    assert check_model(old, _trace()).status == schema.NOT_COMPARED


# -- training mode ------------------------------------------------------------------------------------

def test_eval_mode_during_training_is_found_and_ranked() -> None:
    cand = _trace([_step(i, training=False, loss=3.0 + i) for i in range(STEPS)])
    assert check_train_mode(_trace(), cand).status == schema.DIFFERENT
    top = _top(_trace(), cand)
    assert top.category == "mode" and "eval mode" in top.summary


def test_eval_mode_that_changed_nothing_does_not_make_runs_different() -> None:
    cand = _trace([_step(i, training=False) for i in range(STEPS)])
    c = compare_traces(_trace(), cand)
    assert c.verdict == schema.EQUIVALENT and c.finding("train_mode").status == schema.EQUIVALENT


# -- ranking --------------------------------------------------------------------------------------------

def test_structure_comes_before_its_consequences() -> None:
    cand = _trace([_step(i, features="g", samples=77 + i, loss=1.0) for i in range(STEPS)], model=_model(head=4),
                  rng="r1")
    c = compare_traces(_trace(), cand)
    assert [x.category for x in c.causes][:2] == ["model", "augmentation"]
    assert c.causes[1].consequence_of == "model" and "initialisation" in c.causes[1].summary


def test_optimizer_setting_outranks_the_config_dict_that_set_it() -> None:
    cand = _trace([_step(i, lr=0.2) for i in range(STEPS)], config={"lr": 0.2, "aug_noise": 0.1, "out_dir": "runs/b"},
                  optimizer_lr=0.2)
    c = compare_traces(_trace(), cand)
    assert [x.category for x in c.causes][:2] == ["optimizer", "config"]
    assert c.causes[-1].category == "inert" and "out_dir" in c.causes[-1].summary


def test_data_cause_lists_the_settings_that_could_explain_it_without_blaming_them() -> None:
    loaders = _dataset()
    loaders[0]["num_workers"] = 2
    cand = _trace([_step(i, features="g", samples=77 + i) for i in range(STEPS)], loaders=loaders)
    top = _top(_trace(), cand)
    assert top.category == "augmentation" and "num_workers" in top.summary
    assert any("num_workers" in s for s in top.evidence["settings_that_differ"])


def test_difference_without_any_recorded_explanation_is_unattributed() -> None:
    cand = _trace([_step(i, loss=5.0) for i in range(STEPS)])
    c = compare_traces(_trace(), cand)
    assert [x.category for x in c.causes] == ["unattributed"] and "parity ablate" in c.causes[0].summary


def test_identical_runs_with_only_paths_differing_have_only_inert_causes() -> None:
    c = compare_traces(_trace(), _trace(config={"lr": 0.1, "aug_noise": 0.1, "out_dir": "runs/b"}))
    assert c.verdict == schema.IDENTICAL and c.finding("config").status == schema.IDENTICAL
    assert {x.category for x in c.causes} == {"inert"}


def test_every_category_is_rankable() -> None:
    ranks = [Cause(category, "x").rank for category in CATEGORIES]
    assert ranks == sorted(ranks) and Cause("model", "x", consequence_of="labels").rank > Cause("unattributed", "x").rank


def test_a_data_difference_never_names_flags_unrelated_to_data() -> None:
    base = _trace(config={"lr": 0.1, "aug_noise": 0.1, "eval_every": 10, "out_dir": "runs/a"})
    cand = _trace([_step(i, features="g", samples=77 + i) for i in range(STEPS)],
                  config={"lr": 0.1, "aug_noise": 0.2, "eval_every": 5, "out_dir": "runs/b"})
    c = compare_traces(base, cand)
    top = c.causes[0]
    assert top.category == "augmentation" and "aug_noise" in top.summary and "eval_every" not in top.summary
    assert "eval_every" not in c.first_divergence["diagnosis"] and "aug_noise" in c.first_divergence["diagnosis"]


def test_an_lr_difference_names_schedule_settings_not_unrelated_flags() -> None:
    from parity.checks.divergence import consistent_changes

    changes = [{"path": "root['argparse']['use_amp']", "baseline": None, "candidate": False},
               {"path": "root['argparse']['save_each_epoch']", "baseline": None, "candidate": False},
               {"path": "root['argparse']['warmup_pct']", "baseline": None, "candidate": 0.05},
               {"path": "root['schedulers'][0]['state']", "baseline": 1, "candidate": 2}]
    assert [c["path"] for c in consistent_changes(changes, "lr")] == ["root['argparse']['warmup_pct']",
                                                                      "root['schedulers'][0]['state']"]
