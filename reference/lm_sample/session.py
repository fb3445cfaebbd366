"""What both language-model trainers set up and do around each step: everything but the training loop itself.

`TrainingSession` builds the corpus (if missing), tokenizer, model, AdamW and the warmup-cosine
schedule from a `TrainingConfig`, resumes from a checkpoint set, opens the timed document stream,
and after each step logs `TrainingMetrics`, keeps text samples, renders charts and writes checkpoints
at their intervals. A trainer owns how batches are made and how a step runs.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from reference.lm_sample import checkpoints
from reference.lm_sample.config import TrainingConfig
from reference.lm_sample.corpus import ensure_corpus
from reference.lm_sample.data import IGNORE_INDEX, Batch, DataFetchTimeout, TokenPacker, open_stream
from reference.lm_sample.metrics import MetricsHistory, TextSample, TrainingMetrics, peak_memory_mb
from reference.lm_sample.model import DecoderLM, ModelShape, count_parameters, next_token_loss
from reference.lm_sample.tokenizer import load_tokenizer
from reference.lm_sample.visualization import VisualizationManager

#: Tokens of a row shown in a text sample.
SAMPLE_TOKENS = 48
#: The cosine decays the learning rate to this share of its peak.
MIN_LR_RATIO = 0.1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(warmup_steps: int, total_steps: int):  # type: ignore[no-untyped-def]
    """LambdaLR factor: linear warmup over `warmup_steps`, then cosine from 1 to MIN_LR_RATIO at `total_steps`."""

    # A closure, not a callable object: LambdaLR's state_dict then holds plain data only.
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class TrainingSession:
    """Model, optimizer, schedule, data stream and monitoring of one run; never runs a training step itself."""

    def __init__(self, config: TrainingConfig, say=print) -> None:  # type: ignore[no-untyped-def]
        self.config = config
        self.say = say
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        preset = config.model_preset
        self.shards = ensure_corpus(config.data_dir, preset.shards, preset.docs_per_shard, config.corpus_seed)
        self.tokenizer = load_tokenizer(config.tokenizer_kind, config.data_dir, preset.spm_vocab, self.shards)
        self.shape = ModelShape(vocab_size=self.tokenizer.vocab_size, dim=preset.dim, layers=preset.layers,
                                heads=preset.heads, max_seq_len=preset.seq_len)
        self.model = DecoderLM(self.shape).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=(0.9, 0.95),
                                           weight_decay=config.weight_decay)
        self.scheduler = LambdaLR(self.optimizer, warmup_cosine(config.warmup_steps, config.total_steps))
        self.history = MetricsHistory(config.moving_average_window)
        self.viz = VisualizationManager(config.viz_dir, self.history, config.viz_interval, config.viz_dpi)
        self.start_step, self.total_tokens, data_state = 0, 0, {"documents": 0, "packer": {"buffer": []}}
        if config.resume is not None:
            state = checkpoints.load_checkpoint(config.resume, self.model, self.optimizer, self.scheduler, self.device)
            self.start_step, self.total_tokens, data_state = state.step, state.total_tokens, state.data
            self.history.restore(config.viz_dir, state.step)
            self.say(f"Resumed from {config.resume} at step {state.step}")
        self.stream = open_stream(self.shards, config.fetch_timeout, consumed=data_state["documents"])
        self.packer = TokenPacker(self.stream, self.tokenizer)
        self.packer.load_state_dict(data_state["packer"])

    @property
    def seq_len(self) -> int:
        return self.shape.max_seq_len

    def describe(self) -> str:
        c = self.config
        return (f"preset={c.preset} tokenizer={self.tokenizer.name} vocab={self.tokenizer.vocab_size} "
                f"dim={self.shape.dim} layers={self.shape.layers} params={count_parameters(self.model):,} "
                f"device={self.device} dtype={c.dtype} steps={c.total_steps}")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.config.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.inputs.to(self.device, non_blocking=True), batch.targets.to(self.device, non_blocking=True)

    def train_on_batch(self, batch: Batch) -> tuple[float, float, torch.Tensor]:
        """One optimizer step on all rows of `batch`: loss, accuracy and the (CPU) predictions.

        Both trainers step through here, so the per-token numerics the seed calls identical are one code path;
        the trainers differ in what goes into `batch` and how often it comes."""
        self.model.train()
        inputs, targets = self.to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.model(inputs)
        loss, accuracy, predictions = next_token_loss(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), accuracy.item(), predictions.cpu()

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def remaining_steps(self, desc: str) -> tqdm:
        """A tqdm progress bar over the steps still to run (from the resume step on)."""
        return tqdm(range(self.start_step, self.config.last_step), initial=self.start_step,
                    total=self.config.total_steps, desc=desc, mininterval=1.0, dynamic_ncols=True)

    def run_step(self, step: int, next_batch: Callable[[], Batch],
                 train: Callable[[Batch], tuple[float, float, torch.Tensor]]) -> TrainingMetrics | None:
        """Fetch a batch, train on it and log step `step`; None when the fetch timed out (a checkpoint is saved then).

        The step time covers `train` only: data accumulation is not part of the throughput the seed reports."""
        try:
            batch = next_batch()
        except DataFetchTimeout as exc:
            self.say(f"⚠️  {exc}: saving and stopping after {step} steps")
            self.save_checkpoint(step)
            return None
        lr = self.current_lr()
        started = time.perf_counter()
        loss, accuracy, predictions = train(batch)
        return self.log_step(step, loss, accuracy, lr, batch.tokens, time.perf_counter() - started, batch, predictions)

    def log_step(self, step: int, loss: float, accuracy: float, lr: float, tokens: int, seconds: float,
                 batch: Batch, predictions: torch.Tensor) -> TrainingMetrics:
        """Record step `step` (0-based) and write whatever falls due after it: sample, charts, JSON, checkpoint."""
        self.total_tokens += tokens
        gpu_mb, cpu_mb = peak_memory_mb(self.device.type)
        metrics = TrainingMetrics(step=step, loss=loss, accuracy=accuracy, learning_rate=lr, tokens=tokens,
                                  tokens_per_second=tokens / max(seconds, 1e-9), total_tokens=self.total_tokens,
                                  step_seconds=seconds, gpu_memory_mb=gpu_mb, cpu_memory_mb=cpu_mb)
        self.history.add(metrics)
        if step % self.config.display_every == 0:
            sample = self._text_sample(step, batch, predictions)
            self.history.add_sample(sample)
            self.say(f"📝 step {step}: input {sample.input[:60]!r}\n   predicted {sample.prediction[:60]!r}")
        if self.viz.due(step):
            path = self.viz.render(step)
            self.viz.export()
            self.say(f"📊 Saved visualization: {path.name}")
        if (step + 1) % self.config.checkpoint_interval == 0:
            self.save_checkpoint(step + 1)
        return metrics

    def _text_sample(self, step: int, batch: Batch, predictions: torch.Tensor) -> TextSample:
        inputs = batch.inputs[0, :SAMPLE_TOKENS].tolist()
        targets = [t for t in batch.targets[0, :SAMPLE_TOKENS].tolist() if t != IGNORE_INDEX]
        guessed = predictions[0, :len(targets)].tolist()
        decode = self.tokenizer.decode
        return TextSample(step=step, input=decode(inputs), target=decode(targets), prediction=decode(guessed))

    def save_checkpoint(self, completed_steps: int) -> Path:
        data = {"documents": self.stream.consumed, "packer": self.packer.state_dict()}
        path = checkpoints.save_checkpoint(self.config.checkpoint_dir, completed_steps, self.model, self.optimizer,
                                           self.scheduler, data, self.total_tokens, self.config.as_dict())
        self.say(f"💾 Saved checkpoint: {path.relative_to(self.config.output_dir)}")
        return path

    def documents(self) -> Iterator[str]:
        return self.stream

    def finish(self) -> None:
        """Export the JSON files one last time and stop the fetch thread."""
        self.viz.export()
        self.stream.close()
