"""Checkpoint audit: loading and refusing files, classifying each category, trace usage, impact, diff, rendering."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from parity.audit import (CATEGORIES, attach_impact, audit_to_json, classify, compare_with_trace, diff_checkpoints,
                          load_checkpoint, render_audit_markdown)
from parity.exceptions import CheckpointError
from parity.trace.reader import Trace



class Opaque:
    """A user class: pickling it makes a checkpoint that only an unsafe load can read."""

    def __init__(self) -> None:
        self.lr = 0.1


# -- factories -------------------------------------------------------------------------------------------------


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": []}


def _trained_toy() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def _full_checkpoint(path: Path) -> Path:
    model, optimizer, scheduler = _trained_toy()
    torch.save({
        "model": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": torch.amp.GradScaler("cpu").state_dict(),
        "rng_state": _rng_state(),
        "epoch": 2,
        "args": {"lr": 1e-2, "epochs": 4},
    }, path)
    return path


def _adapter_checkpoint(path: Path) -> Path:
    torch.save({
        "dora_parameters": {
            "layers.0.out_proj.lora_A.default.weight": torch.zeros(2, 8),
            "layers.0.out_proj.lora_B.default.weight": torch.zeros(8, 2),
            "layers.0.out_proj.lora_magnitude_vector.default.weight": torch.ones(8),
        },
        "rng_state": {"torch_rng_state": torch.get_rng_state(), "cuda_rng_state_all": []},
    }, path)
    return path


def _hf_directory(path: Path) -> Path:
    model, optimizer, scheduler = _trained_toy()
    path.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    torch.save(scheduler.state_dict(), path / "scheduler.pt")
    torch.save(torch.amp.GradScaler("cpu").state_dict(), path / "scaler.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
               path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({
        "global_step": 2, "epoch": 1.0, "best_metric": 0.5,
        "log_history": [{"loss": 1.0, "step": 1}, {"loss": 0.9, "step": 2}]}))
    torch.save(Opaque(), path / "training_args.bin")
    (path / "README.md").write_text("model card\n")
    return path


def _statuses(audit) -> dict[str, str]:
    return {r.category: r.status for r in audit.categories}


def _step(index: int, *, events=("zero_grad", "forward", "backward", "optimizer.step"), rng=None, batch=True) -> dict:
    return {"type": "step", "step": index, "events": list(events), "batch": ["d0"] if batch else [],
            "rng": rng}


def _trace(steps: list[dict], meta: dict | None = None) -> Trace:
    return Trace(path=Path("run/trace-rank0.jsonl"), header={"type": "header"}, meta=meta or {}, steps=steps)


# -- loading ---------------------------------------------------------------------------------------------------


def _truncated(tmp: Path) -> Path:
    full = _full_checkpoint(tmp / "full.pt").read_bytes()
    (tmp / "cut.pt").write_bytes(full[: len(full) // 2])
    return tmp / "cut.pt"


def _text(tmp: Path) -> Path:
    (tmp / "notes.pt").write_text("these are my training notes\n")
    return tmp / "notes.pt"


def _unsafe(tmp: Path) -> Path:
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "opts": Opaque()}, tmp / "unsafe.pt")
    return tmp / "unsafe.pt"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.pt").write_bytes(b"")
    return tmp / "empty.pt"


def _cut_safetensors(tmp: Path) -> Path:
    save_file({"w": torch.ones(64)}, str(tmp / "w.safetensors"))
    data = (tmp / "w.safetensors").read_bytes()
    (tmp / "w.safetensors").write_bytes(data[:-40])
    return tmp / "w.safetensors"


def _no_checkpoint_dir(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    (tmp / "out" / "log.txt").write_text("x\n")
    return tmp / "out"


@pytest.mark.parametrize("make, match", [
    (_truncated, r"cut\.pt: truncated or corrupt checkpoint"),
    (_text, r"notes\.pt: not a PyTorch checkpoint"),
    (_unsafe, r"unsafe\.pt: needs an unsafe pickle \(it contains GLOBAL .*Opaque\); re-run with --trust-checkpoint"),
    (lambda tmp: tmp / "missing.pt", r"missing\.pt: no such checkpoint file or directory"),
    (_empty, r"empty\.pt: empty file"),
    (_cut_safetensors, r"w\.safetensors: truncated safetensors file"),
    (_no_checkpoint_dir, r"out: no checkpoint files in this directory"),
], ids=["truncated", "text", "unsafe", "missing", "empty", "cut-safetensors", "no-checkpoint-dir"])
def test_load_rejects_bad_input(tmp_path, make, match):
    path = make(tmp_path)
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing  # loading never writes


def test_trust_loads_the_unsafe_pickle(tmp_path):
    loaded = load_checkpoint(_unsafe(tmp_path), trust=True)
    assert isinstance(loaded.tree["opts"], Opaque)
    audit = classify(loaded)
    assert audit.status_of("model") == "saved"
    assert any("Opaque object (not inspected)" in note for note in audit.notes)


# -- classification ------------------------------------------------------------------------------------------------


def test_full_checkpoint_saves_everything_but_data_position_and_early_stopping(tmp_path):
    audit = classify(load_checkpoint(_full_checkpoint(tmp_path / "full.pt")))
    assert [r.category for r in audit.categories] == list(CATEGORIES)
    assert _statuses(audit) == {
        "model": "saved", "optimizer": "saved", "scheduler": "saved", "grad_scaler": "saved",
        "rng_python": "saved", "rng_numpy": "saved", "rng_torch": "saved", "rng_cuda": "saved",
        "counters": "saved", "data_position": "not_saved", "early_stopping": "not_saved", "config": "saved",
    }
    optimizer = audit.get("optimizer")
    assert optimizer.evidence == "['optimizer_state']['state'] has exp_avg, exp_avg_sq for 4 params; step counters present (step 2)"
    assert optimizer.details["moment_keys"] == ["exp_avg", "exp_avg_sq"]
    model = audit.get("model")
    assert model.details["tensors"] == 4 and model.details["elements"] == 4 * 3 + 3 + 3 * 2 + 2
    assert "adapter" not in model.evidence
    assert "['scaler'] has scale=65536.0" in audit.get("grad_scaler").evidence
    assert "last_epoch=2" in audit.get("scheduler").evidence
    assert audit.get("rng_cuda").details["empty"] is True
    assert audit.get("counters").evidence == "['epoch']=2"


def test_adapter_only_checkpoint(tmp_path):
    audit = classify(load_checkpoint(_adapter_checkpoint(tmp_path / "dora.pt")))
    statuses = _statuses(audit)
    assert statuses["model"] == "saved" and audit.get("model").evidence.endswith("adapter parameters only")
    assert statuses["rng_torch"] == "saved" and statuses["rng_cuda"] == "saved"
    for missing in ("optimizer", "scheduler", "grad_scaler", "rng_python", "rng_numpy", "counters",
                    "early_stopping", "config"):
        assert statuses[missing] == "not_saved", missing


def test_hugging_face_directory(tmp_path):
    loaded = load_checkpoint(_hf_directory(tmp_path / "checkpoint-2"))
    assert {f.name: f.status for f in loaded.files}["training_args.bin"] == "not loaded (unsafe pickle)"
    audit = classify(loaded)
    assert _statuses(audit) == {
        "model": "saved", "optimizer": "saved", "scheduler": "saved", "grad_scaler": "saved",
        "rng_python": "saved", "rng_numpy": "saved", "rng_torch": "saved", "rng_cuda": "not_saved",
        "counters": "saved", "data_position": "not_saved", "early_stopping": "saved", "config": "saved",
    }
    assert audit.get("optimizer").evidence.startswith("['optimizer.pt']['state'] has exp_avg")
    assert audit.get("config").evidence == "['training_args.bin']: config present, not loaded (unsafe pickle)"
    assert audit.get("rng_torch").evidence.startswith("['rng_state.pth']['cpu']")
    assert "README.md: not a checkpoint file type, ignored" in audit.notes


# -- trace usage and impact ---------------------------------------------------------------------------------------


def test_compare_with_trace_grades_used_and_unused_state(tmp_path):
    audit = classify(load_checkpoint(_adapter_checkpoint(tmp_path / "dora.pt")))
    trace = _trace(
        [_step(i, rng={"torch": f"t{i}", "numpy": "n", "python": "p"}) for i in range(3)],
        meta={"optimizers": [{"class": "torch.optim.adamw.AdamW", "defaults": {"lr": 0.001}}]},
    )
    graded = compare_with_trace(audit, trace)
    optimizer = graded.get("optimizer")
    assert (optimizer.status, optimizer.used) == ("not_saved", True)
    assert optimizer.evidence == "used by the run (trace shows AdamW(lr=0.001)) but NOT saved"
    assert (graded.status_of("grad_scaler"), graded.get("grad_scaler").used) == ("not_applicable", False)
    assert graded.status_of("scheduler") == "not_applicable"
    assert graded.status_of("rng_numpy") == "not_applicable"  # unchanged digest: never drawn from
    assert graded.status_of("rng_cuda") == "not_applicable"  # empty slot, CUDA never initialised
    assert graded.get("rng_torch").used is True and graded.status_of("rng_torch") == "saved"
    assert graded.status_of("data_position") == "not_saved"
    assert graded.status_of("counters") == "not_saved" and graded.get("counters").used is True
    assert graded.get("early_stopping").used is None and graded.status_of("early_stopping") == "not_saved"
    assert graded.trace == "run/trace-rank0.jsonl"
    assert audit.get("optimizer").used is None  # the input audit is untouched


def test_compare_with_trace_sees_scaler_and_stateless_sgd(tmp_path):
    audit = classify(load_checkpoint(_adapter_checkpoint(tmp_path / "dora.pt")))
    trace = _trace([_step(i, events=("scaler.scale", "backward", "scaler.step", "scaler.update")) for i in range(2)],
                   meta={"optimizers": [{"class": "torch.optim.sgd.SGD", "defaults": {"lr": 0.1, "momentum": 0}}]})
    graded = compare_with_trace(audit, trace)
    assert graded.status_of("grad_scaler") == "not_saved"
    assert "scaler.step" in graded.get("grad_scaler").evidence
    assert graded.status_of("optimizer") == "not_applicable"
    assert graded.get("rng_python").used is None  # no digests recorded: the trace cannot say


def test_attach_impact(tmp_path):
    audit = classify(load_checkpoint(_adapter_checkpoint(tmp_path / "dora.pt")))
    with_impact = attach_impact(audit, [
        {"state": "optimizer", "fired": True, "first_divergent_step": 7, "loss_rel_at_end": 0.0123, "called": True},
        {"state": "rng_numpy", "fired": False, "first_divergent_step": None, "loss_rel_at_end": None, "called": True},
        {"state": "scheduler", "fired": False, "first_divergent_step": None, "loss_rel_at_end": None, "called": False},
    ])
    assert with_impact.get("optimizer").impact == "dropping it changes the resumed run from step 7; final loss off by 1.23%"
    assert with_impact.get("rng_numpy").impact.startswith("none measured")
    assert with_impact.get("scheduler").impact.startswith("not measured")
    assert with_impact.get("model").impact is None
    with pytest.raises(CheckpointError, match=r"controls\[0\]: unknown state 'weights'"):
        attach_impact(audit, [{"state": "weights", "fired": True}])


# -- diff and rendering -----------------------------------------------------------------------------------------


def test_diff_checkpoints_finds_added_key_and_changed_dtype(tmp_path):
    torch.save({"model": {"w": torch.ones(2, 3)}, "epoch": 1}, tmp_path / "a.pt")
    torch.save({"model": {"w": torch.ones(2, 3, dtype=torch.float16)}, "epoch": 5,
                "optimizer_state": {"state": {}, "param_groups": []}}, tmp_path / "b.pt")
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert diff_checkpoints(a, b) == [
        {"path": "['model']['w']", "change": "changed", "a": "tensor float32 [2, 3]", "b": "tensor float16 [2, 3]"},
        {"path": "['optimizer_state']", "change": "added", "a": None, "b": "dict of 2 keys"},
    ]
    assert diff_checkpoints(a, a) == []


def test_renderers(tmp_path):
    ref = load_checkpoint(_adapter_checkpoint(tmp_path / "dora.pt"))
    full = load_checkpoint(_full_checkpoint(tmp_path / "full.pt"))
    trace = _trace([_step(i, rng={"torch": f"t{i}"}) for i in range(2)],
                   meta={"optimizers": [{"class": "torch.optim.adamw.AdamW", "defaults": {"lr": 0.001}}]})
    audit = attach_impact(compare_with_trace(classify(ref), trace),
                          [{"state": "optimizer", "fired": True, "first_divergent_step": 3,
                            "loss_rel_at_end": 0.02, "called": True}])
    doc = audit_to_json(audit)
    assert doc["checkpoint"] == str(tmp_path / "dora.pt")
    assert [set(c) for c in doc["categories"]] == [{"category", "status", "evidence", "used", "impact"}] * 12
    assert "optimizer" in doc["summary"]["not_saved"] and "grad_scaler" in doc["summary"]["not_applicable"]
    json.dumps(doc, allow_nan=False)
    text = render_audit_markdown(audit, against_diff=diff_checkpoints(ref, full))
    for heading in ("## ✅ Saved", "## ❌ NOT saved", "## ➖ Not applicable",
                    "| category | status | evidence | measured impact |"):
        assert heading in text
    assert "| optimizer | ❌ NOT saved | used by the run (trace shows AdamW(lr=0.001)) but NOT saved " \
           "| dropping it changes the resumed run from step 3; final loss off by 2.00% |" in text
    assert "| ['optimizer_state'] | added |" in text


# -- odd keys and formats found in real checkpoints ------------------------------------------------------------


def _labels_checkpoint(path: Path, labels: dict, width: int) -> Path:
    torch.save({"labels": labels, "model": {"head.weight": torch.zeros(width, 2)}, "epoch": 1}, path)
    return path


def test_nan_and_non_string_keys_survive_classify_diff_render_and_json(tmp_path):
    nan = float("nan")
    a = load_checkpoint(_labels_checkpoint(tmp_path / "a.pt", {nan: 0, "a": 1, 3: 2, "3": 4}, 3))
    b = load_checkpoint(_labels_checkpoint(tmp_path / "b.pt", {nan: 0, "b": 1, 3: 2.0, (1, 2): 5}, 4))
    audit = classify(a)
    assert audit.status_of("model") == "saved" and audit.status_of("counters") == "saved"
    diff = {d["path"]: (d["change"], d["a"], d["b"]) for d in diff_checkpoints(a, b)}
    # Both NaN keys are the same label once reloaded (NaN != NaN would call them removed and added).
    assert diff == {
        "['labels']['a']": ("removed", "int", None),
        "['labels']['b']": ("added", None, "int"),
        "['labels']['3']": ("removed", "int", None),
        "['labels'][3]": ("changed", "int", "float"),
        "['labels'][(1, 2)]": ("added", None, "int"),
        "['model']['head.weight']": ("changed", "tensor float32 [3, 2]", "tensor float32 [4, 2]"),
    }
    text = render_audit_markdown(audit, against_diff=diff_checkpoints(a, b))
    assert "| ['labels'][3] | changed | int | float |" in text
    json.dumps({"audit": audit_to_json(audit), "against": diff_checkpoints(a, b)}, allow_nan=False)


def test_mixed_type_keys_inside_recognised_states(tmp_path):
    nan = float("nan")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    state = optimizer.state_dict()
    state["state"][0] = {"momentum_buffer": torch.zeros(2), 7: 1.0, nan: 2.0}
    state["param_groups"][0][5] = 1
    torch.save({nan: {"x": 1}, "optimizer": state,
                "sched": {"last_epoch": 1, "base_lrs": [0.1], 3: 1, nan: 2}}, tmp_path / "odd.pt")
    audit = classify(load_checkpoint(tmp_path / "odd.pt"))
    assert audit.get("optimizer").evidence.startswith("['optimizer']['state'] has momentum_buffer, 7, nan for 1 param")
    assert audit.status_of("scheduler") == "saved"


def test_cli_against_with_nan_keys_exits_zero_with_json(tmp_path, capsys):
    from parity.cli import main

    nan = float("nan")
    a = _labels_checkpoint(tmp_path / "a.pt", {nan: 0, "a": 1}, 3)
    b = _labels_checkpoint(tmp_path / "b.pt", {nan: 0, "a": 1}, 3)
    assert main(["audit", str(a), "--against", str(b), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["against"]["differences"] == []


def _suffixless_torch(tmp: Path) -> Path:
    _full_checkpoint(tmp / "full.pt").rename(tmp / "checkpoint")
    return tmp / "checkpoint"


def _suffixless_safetensors(tmp: Path) -> Path:
    save_file({"w": torch.ones(4), "b": torch.zeros(2)}, str(tmp / "weights"))
    return tmp / "weights"


def _suffixless_json(tmp: Path) -> Path:
    (tmp / "state").write_text(json.dumps({"global_step": 7, "best_metric": 0.5}))
    return tmp / "state"


def _plain_pickle(tmp: Path) -> Path:
    with (tmp / "state.pt").open("wb") as handle:  # a .pt suffix on a pickle.dump file, as real trainers do
        pickle.dump({"model": {"w": torch.ones(3)}, "epoch": 2, "numpy_rng": np.random.get_state()}, handle)
    return tmp / "state.pt"


@pytest.mark.parametrize("make, kind, saved", [
    (_suffixless_torch, "torch", {"model", "optimizer", "scheduler", "counters", "rng_torch"}),
    (_suffixless_safetensors, "safetensors", {"model"}),
    (_suffixless_json, "json", {"counters", "early_stopping"}),
    (_plain_pickle, "pickle", {"model", "counters", "rng_numpy"}),
], ids=["torch", "safetensors", "json", "plain-pickle"])
def test_format_is_sniffed_from_the_bytes(tmp_path, make, kind, saved):
    loaded = load_checkpoint(make(tmp_path))
    assert loaded.kind == kind and [f.format for f in loaded.files] == [kind]
    statuses = _statuses(classify(loaded))
    assert {c for c, s in statuses.items() if s == "saved"} >= saved


def _unsafe_plain_pickle(tmp: Path) -> Path:
    with (tmp / "raw").open("wb") as handle:
        pickle.dump({"opts": Opaque()}, handle)
    return tmp / "raw"


def _cut_plain_pickle(tmp: Path) -> Path:
    data = pickle.dumps({"epoch": 2, "history": list(range(100))})
    (tmp / "cut.pkl").write_bytes(data[: len(data) // 2])
    return tmp / "cut.pkl"


def _unknown_bytes(tmp: Path) -> Path:
    (tmp / "blob").write_bytes(b"\x00\x01not any checkpoint format")
    return tmp / "blob"


@pytest.mark.parametrize("make, match", [
    (_unsafe_plain_pickle, r"raw: plain pickle \(not a torch checkpoint\) that needs an unsafe load "
                           r"\(it contains GLOBAL .*Opaque\); re-run with --trust-checkpoint"),
    (_cut_plain_pickle, r"cut\.pkl: truncated or corrupt plain pickle \(not a torch checkpoint"),
    (_unknown_bytes, r"blob: not a checkpoint \(neither a torch zip archive, a pickle, a safetensors file nor JSON"),
], ids=["unsafe-plain-pickle", "cut-plain-pickle", "unknown-bytes"])
def test_plain_pickles_and_unknown_files_are_named_for_what_they_are(tmp_path, make, match):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(make(tmp_path))


def test_trusted_plain_pickle_loads_user_objects(tmp_path):
    loaded = load_checkpoint(_unsafe_plain_pickle(tmp_path), trust=True)
    assert loaded.kind == "pickle" and isinstance(loaded.tree["opts"], Opaque)


def test_directory_sniffs_suffixless_files_and_ignores_text(tmp_path):
    (tmp_path / "run").mkdir()
    _suffixless_safetensors(tmp_path / "run")
    (tmp_path / "run" / "latest").write_text("global_step10\n")
    loaded = load_checkpoint(tmp_path / "run")
    assert {f.name: (f.format, f.status) for f in loaded.files} == {
        "weights": ("safetensors", "loaded"), "latest": ("other", "ignored")}


# -- the CLIP+DoRA trainer pair ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_clip_dora_pair_checkpoints(tmp_path, capsys):
    """The reference trainer saves no optimizer state; the complete one does. In-process: about 10 s on CPU."""
    from implementations.clip_dora_complete.train import main as complete_main
    from reference.clip_dora.train import main as reference_main

    assert reference_main(["--out", str(tmp_path / "ref"), "--epochs", "2"]) == 0
    assert complete_main(["--out", str(tmp_path / "complete"), "--epochs", "2"]) == 0
    capsys.readouterr()
    reference = classify(load_checkpoint(tmp_path / "ref" / "ckpt_epoch2.pt"))
    complete = classify(load_checkpoint(tmp_path / "complete" / "ckpt_epoch2.pt"))
    assert reference.status_of("optimizer") == "not_saved"
    assert complete.status_of("optimizer") == "saved"
    assert reference.get("model").details["adapter_only"] and complete.get("model").details["adapter_only"]
    for category in ("early_stopping", "counters", "config"):
        assert (reference.status_of(category), complete.status_of(category)) == ("not_saved", "saved"), category
    added = {d["path"] for d in diff_checkpoints(load_checkpoint(tmp_path / "ref" / "ckpt_epoch2.pt"),
                                                 load_checkpoint(tmp_path / "complete" / "ckpt_epoch2.pt"))
             if d["change"] == "added"}
    assert {"['optimizer_state']", "['early_stopping_state']", "['epoch']", "['metadata']"} <= added
