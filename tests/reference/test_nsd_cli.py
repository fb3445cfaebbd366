"""End-to-end command lines of the neural_seq_decoder pair: data generator, both trainers, evaluate, lengths."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from implementations.neural_seq_decoder_mod import evaluate as evaluate_cli
from implementations.neural_seq_decoder_mod import lengths as lengths_cli
from reference.neural_seq_decoder import train as reference_train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# One thread: the machine is shared and thread count changes float reduction order.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _run(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("nsdcli") / "tiny.pkl")
    _run("reference.neural_seq_decoder.make_data", "--out", path, "--seed", "1", "--preset", "tiny")
    with open(path, "rb") as handle:
        loaded = pickle.load(handle)
    assert len(loaded["train"]) == len(loaded["test"]) == 3
    assert loaded["train"][0]["sentenceDat"][0].shape[1] == 16
    return path


def test_reference_cli_tiny_run(tiny_data, tmp_path):
    out = tmp_path / "ref"
    result = _run("reference.neural_seq_decoder.train", "--preset", "tiny", "--outputDir", str(out), "--datasetPath",
                  tiny_data, "--nBatch", "20", "--device", "cpu", "--stepLog", str(tmp_path / "steps.jsonl"))
    assert "batch 0, ctc loss:" in result.stdout
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "steps.jsonl")]
    assert len(losses) == 20 and losses[-1] < losses[0]
    with open(out / "args", "rb") as handle:
        assert pickle.load(handle)["nUnits"] == 32
    assert os.path.exists(out / "trainingStats") and not os.path.exists(out / "modelWeights")  # nBatch <= 100


@pytest.mark.filterwarnings("ignore::UserWarning")  # as PYTHONWARNINGS=ignore does for the command lines
def test_mod_cli_run11_then_evaluate_both_decoders(tiny_data, tmp_path, capsys):
    out = tmp_path / "mod"
    _run("implementations.neural_seq_decoder_mod.train", "--preset", "tiny", "--preset-run", "run11", "--outputDir", str(out),
         "--datasetPath", tiny_data, "--nBatch", "20", "--device", "cpu",
         # compile and worker start-up cost tens of seconds on 2 shared CPUs; the GPU test covers them
         "--compile", "off", "--num-workers", "0", "--persistent-workers", "off")
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert sum("loss" in r for r in records) == 20 and records[1]["decoder"] == "beam"
    result = _run("implementations.neural_seq_decoder_mod.evaluate", "--checkpoint", str(out / "checkpoint.pt"),
                  "--decoder", "greedy", "--beam-size", "8", "--device", "cpu")
    reports = {"greedy": json.loads(result.stdout)}
    # The other decoder through the same main() in this process: the command line is covered just above.
    capsys.readouterr()
    assert evaluate_cli.main(["--checkpoint", str(out / "checkpoint.pt"), "--decoder", "beam", "--beam-size", "8",
                              "--device", "cpu"]) == 0
    reports["beam"] = json.loads(capsys.readouterr().out)
    for decoder, report in reports.items():
        assert report["decoder"] == decoder and report["t_eff"] == "floor"


def test_lengths_cli_reports_no_difference_on_generated_data(tiny_data, capsys):
    lengths_cli.main(["--datasetPath", tiny_data, "--kernelLen", "8", "--strideLen", "4"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 90 and summary["n_differ"] == 0  # every generated trial is >= kernelLen


def test_reference_help_names_device_fallback(capsys):
    # The parser `python -m reference.neural_seq_decoder.train` builds, asked in this process (the command line
    # itself runs in test_reference_cli_tiny_run).
    with pytest.raises(SystemExit) as exit_:
        reference_train.main(["--help"])
    assert exit_.value.code == 0 and "cuda if available else cpu" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_reference_and_run11_with_compile(tiny_data, tmp_path):
    _run("reference.neural_seq_decoder.train", "--preset", "tiny", "--outputDir", str(tmp_path / "ref"),
         "--datasetPath", tiny_data, "--nBatch", "5", "--device", "cuda")
    _run("implementations.neural_seq_decoder_mod.train", "--preset", "tiny", "--preset-run", "run11",
         "--outputDir", str(tmp_path / "mod"), "--datasetPath", tiny_data, "--nBatch", "5", "--device", "cuda", timeout=600)
    _run("implementations.neural_seq_decoder_mod.train", "--preset", "tiny", "--preset-run", "run6",
         "--outputDir", str(tmp_path / "run6"), "--datasetPath", tiny_data, "--nBatch", "5", "--device", "cuda", timeout=600)
