"""Fidelity of the histocc schedule, metrics and model quirks, plus an end-to-end reference run."""

from __future__ import annotations

import atexit
import csv
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.histocc.finetune import build_scheduler, main
from reference.histocc.formatter import PAD_IDX
from reference.histocc.make_data import TARGET_COLS, make_rows, write_csv
from reference.histocc.metrics import flat_accuracy, order_invariant_accuracy
from reference.histocc.model import build_model, create_mask

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPT_KEYS = {"model", "optimizer", "scheduler", "step", "key"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """In-process runs share two busy cores; oversubscribed threads make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_args(data: str, save_path: str, *extra: str) -> list[str]:
    return ["--dataset", data, "--target-cols", *TARGET_COLS, "--language-col", "lang", "--save-path", save_path,
            "--model-preset", "tiny", "--batch-size", "8", "--seed", "0", "--device", "cpu",
            "--learning-rate", "1e-3", "--log-interval", "2", "--eval-interval", "2", *extra]


def _run(module: str, args: list[str], prefix: tuple[str, ...] = ("-m",), hash_seed: str = "123") -> str:
    # One thread: two cores are shared, and thread count must match across compared runs.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, *prefix, module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _log_steps(save_path: str) -> list[int]:
    with open(os.path.join(save_path, "logs.csv")) as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def _lambda(s: int, warmup: int, total: int) -> float:
    """Fact sheet section 8, closed form of the linear warmup/decay multiplier."""
    if s < warmup:
        return s / max(1, warmup)
    return max(0.0, (total - s) / max(1, total - warmup))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.integers(0, 70), st.floats(1e-6, 1e-2))
def test_schedule_matches_closed_form(total, warmup, lr0):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr0)
    sched = build_scheduler(opt, warmup, total)
    for k in range(1, total + 3):  # the k-th update uses lr0 * lambda(k - 1), also past total
        assert opt.param_groups[0]["lr"] == lr0 * _lambda(k - 1, warmup, total)
        opt.step()
        sched.step()


def test_order_invariant_accuracy_hand_computed():
    # N=2, S=2. Row 0 predicts its two blocks swapped (all match); row 1 gets 1 of 2 tokens of block 1.
    target = torch.tensor([[5, 6, 7, 8, 3], [5, 6, 1, 1, 3]])
    output = torch.tensor([[7, 8, 5, 6, 9], [5, 6, 1, 9, 9]])
    seq_acc, token_acc = order_invariant_accuracy(output, target, nb_blocks=2, block_size=2)
    assert seq_acc == pytest.approx(50.0) and token_acc == pytest.approx(100 * 3.5 / 4)


def test_flat_accuracy_is_exact_set_match_fraction():
    logits = torch.tensor([[3.0, -3.0], [3.0, 3.0], [-3.0, -3.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert flat_accuracy(logits, target) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model([2086] * 17, 9, preset="tiny").eval()


def test_model_shapes_keys_and_identical_decoder_layers(tiny_model):
    sd = tiny_model.state_dict()
    assert sd["decoder.token_emb.embedding.weight"].shape[0] == 2087
    assert sd["decoder.positional_encoding.pos_embedding"].shape == (128, 1, 64)
    assert sd["linear_decoder.weight"].shape == (9, 64)
    assert any(k.startswith("encoder.") for k in sd) and "decoder.head.weight" in sd
    layer_keys = [k[len("decoder.decoder.layers.0."):] for k in sd if k.startswith("decoder.decoder.layers.0.")]
    assert "self_attn.in_proj_weight" in layer_keys and "norm3.weight" in layer_keys
    for name in layer_keys:  # deep-copied layer: identical at init
        assert torch.equal(sd[f"decoder.decoder.layers.0.{name}"], sd[f"decoder.decoder.layers.2.{name}"])


def test_float_padding_mask_adds_one_instead_of_masking(tiny_model):
    torch.manual_seed(1)
    memory = torch.randn(2, 128, 64)
    target = torch.tensor([[2, 1010, 1011, 3, 1, 1], [2, 1012, 3, 3, 1013, 3]])
    causal, pad = create_mask(target, PAD_IDX, "cpu")
    assert pad.dtype == torch.float32 and pad[0].tolist() == [0, 0, 0, 0, 1, 1]
    with torch.no_grad():
        quirk = tiny_model.decoder(memory, target, causal, pad)
        # The same bias written as a per-(batch, head) additive attention mask.
        additive = (causal[None] + pad[:, None, :]).repeat_interleave(8, dim=0)
        explicit = tiny_model.decoder(memory, target, additive, torch.zeros_like(pad))
        with warnings.catch_warnings():  # torch warns about mixing a float and a bool mask
            warnings.simplefilter("ignore", UserWarning)
            masked = tiny_model.decoder(memory, target, causal, pad.bool())
    torch.testing.assert_close(quirk, explicit)
    assert not torch.allclose(quirk[0], masked[0])


@functools.lru_cache(maxsize=None)
def reference_first_leg() -> dict:
    """Data plus a tiny reference subprocess run to step 4, shared with test_occpast (cached).

    48 rows: 44 train (6 batches of 8 per epoch) and 4 validation rows.
    """
    base = tempfile.mkdtemp(prefix="histocc_e2e_")
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    data = os.path.join(base, "data.csv")
    write_csv(data, make_rows(48, seed=0))
    save = os.path.join(base, "ref")
    out = _run("reference.histocc.finetune", _tiny_args(data, save, "--save-interval", "2", "--max-steps", "4"))
    return {"base": base, "data": data, "save": save, "out": out, "logs": _log_steps(save),
            "last": torch.load(os.path.join(save, "last.bin"))}


def test_reference_trains_evaluates_and_checkpoints():
    run = reference_first_leg()
    assert run["logs"] == [2, 4]
    for name in ("data_train.csv", "data_val.csv", "key.csv", "args.yaml", "2.bin", "4.bin"):
        assert os.path.isfile(os.path.join(run["save"], name)), name
    last = run["last"]
    assert set(last) == CKPT_KEYS and last["step"] == 4 and last["scheduler"]["last_epoch"] == 4
    assert "Eval at step 4" in run["out"]


def test_reference_resumes_from_last_bin(capsys, tmp_path):
    run = reference_first_leg()
    save = str(tmp_path / "ref")
    shutil.copytree(run["save"], save)
    main(_tiny_args(run["data"], save, "--save-interval", "2", "--max-steps", "6"))
    out = capsys.readouterr().out
    assert "Resumed from" in out and "at step 4" in out and "Prepared data found" in out
    assert _log_steps(save) == [2, 4, 6]
    last = torch.load(os.path.join(save, "last.bin"))
    assert last["step"] == 6 and last["scheduler"]["last_epoch"] == 6
    with open(os.path.join(save, "logs.csv")) as f:
        assert f.read().count("step,") == 1, "header must be written once"
