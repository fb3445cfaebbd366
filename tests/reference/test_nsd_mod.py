"""The modified neural_seq_decoder: upstream settings reproduce the reference bitwise, presets run, resume is exact."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from implementations.neural_seq_decoder_mod.beam import make_decoder, prefix_beam_search
from implementations.neural_seq_decoder_mod.config import RUN_PRESETS, build_args, make_mod_args, make_parser
from implementations.neural_seq_decoder_mod.evaluate import evaluate_checkpoint
from implementations.neural_seq_decoder_mod.lengths import compare_input_lengths
from implementations.neural_seq_decoder_mod.toggles import TOGGLES, baseline_args, run11_args
from implementations.neural_seq_decoder_mod.trainer import train_model as train_mod
from reference.neural_seq_decoder.config import make_args
from reference.neural_seq_decoder.make_data import DataSpec, write_dataset
from reference.neural_seq_decoder.trainer import train_model as train_ref

SMALL = DataSpec(16, 6, 2, 8, 3, 2, 4, (3, 5), kernel_len=8, stride_len=4)
# Settings whose CPU cost is process start-up, not arithmetic: left to the GPU/CLI runs.
_FAST = {"compile": False, "num_workers": 0, "persistent_workers": False}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("nsdmod") / "small.pkl"), seed=5, spec=SMALL)


def _final_state(holder):
    return lambda step, loss, model, optimizer: holder.update({k: v.detach().clone() for k, v in model.state_dict().items()})


def test_mod_with_upstream_settings_equals_reference_bitwise(dataset, tmp_path):
    # Noise, offset and dropout stay on: the RNG stream has to line up too.
    common = {"datasetPath": dataset, "device": "cpu", "nBatch": 6, "batchSize": 4}
    ref_state, mod_state = {}, {}
    ref = train_ref(make_args("tiny", outputDir=str(tmp_path / "ref"), **common), step_hook=_final_state(ref_state))
    mod = train_mod(make_mod_args("tiny", outputDir=str(tmp_path / "mod"), **common), step_hook=_final_state(mod_state))
    assert ref["trainLoss"] == mod["trainLoss"]
    assert ref["testLoss"] == mod["testLoss"] and ref["testCER"] == mod["testCER"]
    assert list(ref_state) == list(mod_state)
    assert all(torch.equal(ref_state[k], mod_state[k]) for k in ref_state)


def test_explicit_baseline_toggles_equal_defaults_and_run11_toggles_equal_preset():
    parser = make_parser()
    head = ["--outputDir", "o", "--datasetPath", "d", "--preset", "tiny"]
    assert build_args(parser.parse_args(head + baseline_args())) == build_args(parser.parse_args(head))
    via_toggles = build_args(parser.parse_args(head + run11_args()))
    via_preset = build_args(parser.parse_args(head + ["--preset-run", "run11"]))
    assert {**via_toggles, "preset_run": "run11"} == via_preset
    for name, (base, changed) in TOGGLES.items():
        one = build_args(parser.parse_args(head + changed))
        assert one != build_args(parser.parse_args(head)), f"toggle {name} changes nothing"


@pytest.mark.parametrize("run", sorted(RUN_PRESETS))
def test_each_run_preset_trains_five_steps(dataset, tmp_path, run):
    args = make_mod_args("tiny", run, outputDir=str(tmp_path), datasetPath=dataset, device="cpu", nBatch=5, **_FAST)
    result = train_mod(args)
    assert len(result["trainLoss"]) == 5 and all(math.isfinite(v) for v in result["trainLoss"])
    assert len(result["testCER"]) == 1


def test_resume_continues_bit_identically(dataset, tmp_path):
    common = {"datasetPath": dataset, "device": "cpu", "nBatch": 8, "batchSize": 4, "clip_grad": 1.0, "nan_skip": True}
    straight_state, resumed_state = {}, {}
    straight = train_mod(make_mod_args("tiny", outputDir=str(tmp_path / "a"), **common), step_hook=_final_state(straight_state))
    first = train_mod(make_mod_args("tiny", outputDir=str(tmp_path / "b"), stop_after=4, **common))
    second = train_mod(make_mod_args("tiny", outputDir=str(tmp_path / "b"), resume=str(tmp_path / "b" / "checkpoint.pt"), **common),
                       step_hook=_final_state(resumed_state))
    assert first["trainLoss"] + second["trainLoss"] == straight["trainLoss"]
    assert all(torch.equal(straight_state[k], resumed_state[k]) for k in straight_state)


def test_input_length_formulas_differ_only_below_kernel_len():
    result = compare_input_lengths([20, 28, 31, 32, 35, 36, 100], kernel_len=32, stride_len=4)
    assert result["upstream"] == [-3, -1, 0, 0, 0, 1, 17]
    assert result["floor"] == [1, 1, 1, 1, 1, 1, 17]
    assert result["windows"] == [1, 1, 1, 1, 1, 2, 18]
    assert result["differs"] == [0, 1, 2, 3, 4] and result["short"] == [0, 1, 2]


def test_prefix_beam_search_finds_most_probable_labelling():
    rng = np.random.default_rng(0)
    log_probs = np.log(rng.dirichlet(np.ones(3) * 0.7, size=5))
    totals = {}
    for path in itertools.product(range(3), repeat=5):
        collapsed = tuple(c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1]))
        totals[collapsed] = np.logaddexp(totals.get(collapsed, -np.inf), sum(log_probs[t, c] for t, c in enumerate(path)))
    assert tuple(prefix_beam_search(log_probs, beam_size=50)) == max(totals, key=totals.get)


def test_beam_and_greedy_agree_on_peaked_logits():
    logits = torch.full((6, 4), -8.0)
    for frame, cls in enumerate([2, 2, 0, 2, 3, 0]):
        logits[frame, cls] = 8.0
    assert make_decoder("beam", 5)(logits, 6).tolist() == make_decoder("greedy")(logits, 6).tolist() == [2, 2, 3]


def test_evaluate_same_weights_greedy_and_beam(dataset, tmp_path):
    train_mod(make_mod_args("tiny", outputDir=str(tmp_path), datasetPath=dataset, device="cpu", nBatch=3, batchSize=4))
    greedy = evaluate_checkpoint(str(tmp_path / "checkpoint.pt"), "greedy")
    beam = evaluate_checkpoint(str(tmp_path / "checkpoint.pt"), "beam", beam_size=4)
    assert greedy["test_loss"] == beam["test_loss"]  # same weights, only the decoder differs
    assert 0 <= beam["per"] and 0 <= greedy["per"]


def test_config_rejects_bad_combinations():
    with pytest.raises(ValueError, match="--persistent-workers"):
        make_mod_args("tiny", persistent_workers=True, num_workers=0)
    with pytest.raises(ValueError, match="--lr-schedule linear"):
        make_mod_args("tiny", lrStart=0.01, lrEnd=0.02)
