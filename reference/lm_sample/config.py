"""Presets, the training configuration and the command-line options both language-model trainers share.

`add_shared_options` defines every flag the seed lists for both scripts (intervals, output, data,
preset, device, seed, learning rate, test mode); each trainer adds its own (`--steps` and `--pack` here,
`--max-chunks` and `--tokens-per-chunk` in the chunk trainer). `--test` shrinks a run to a few steps at
the tiny preset: it replaces the values of flags left at their defaults, never one given explicitly.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Model and tokenizer sizes of a named preset."""

    dim: int
    layers: int
    heads: int
    seq_len: int
    tokenizer: str
    """Tokenizer used when --tokenizer is `auto`."""
    spm_vocab: int
    """SentencePiece vocabulary size (the byte tokenizer always has 259 ids)."""
    shards: int
    docs_per_shard: int
    """Size of the synthetic corpus written when --data-dir holds no shard."""


PRESETS: dict[str, Preset] = {
    # The seed's model: embedding dim 1,536 and a 32,000-piece SentencePiece vocabulary (about 440M parameters).
    "full": Preset(dim=1536, layers=12, heads=12, seq_len=512, tokenizer="sentencepiece", spm_vocab=32_000,
                   shards=8, docs_per_shard=1000),
    # CPU size for tests and CPU pair runs: bytes as tokens, two layers of width 64 (about 170K parameters).
    "tiny": Preset(dim=64, layers=2, heads=4, seq_len=64, tokenizer="byte", spm_vocab=512,
                   shards=2, docs_per_shard=200),
}

#: Values `--test` gives flags left at their defaults (per flag `dest`).
TEST_OVERRIDES: dict[str, Any] = {"preset": "tiny", "steps": 10, "max_chunks": 6, "tokens_per_chunk": 1024,
                                  "viz_interval": 5, "checkpoint_interval": 5, "display_every": 5,
                                  "warmup_steps": 2, "output_dir": "test_output", "data_dir": "test_output/data"}


@dataclass
class TrainingConfig:
    """Everything a run needs besides its data stream; validated on creation, messages name the flag."""

    total_steps: int
    """Optimizer steps of the run (--steps, or --max-chunks in the chunk trainer)."""
    output_dir: Path
    data_dir: Path
    preset: str = "full"
    tokenizer: str = "auto"
    device: str = "auto"
    dtype: str = "fp32"
    seed: int = 42
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    viz_interval: int = 50
    checkpoint_interval: int = 2000
    display_every: int = 5
    moving_average_window: int = 50
    fetch_timeout: float = 30.0
    corpus_seed: int = 0
    viz_dpi: int = 60
    resume: Path | None = None
    stop_after: int | None = None
    """Stop after this many steps of a schedule that still spans `total_steps` (a resume check's first leg)."""
    test: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    """Options of one trainer only (pack, tokens_per_chunk): recorded in checkpoints with the rest."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"--preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        if self.stop_after is not None and not 0 < self.stop_after <= self.total_steps:
            raise ValueError(f"--stop-after {self.stop_after}: give a step count between 1 and the run's {self.total_steps}")
        for name in ("total_steps", "viz_interval", "checkpoint_interval", "display_every", "moving_average_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.fetch_timeout <= 0:
            raise ValueError(f"--fetch-timeout must be positive, got {self.fetch_timeout}")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"--dtype {self.dtype!r}: use fp32 or bf16")
        self.output_dir, self.data_dir = Path(self.output_dir), Path(self.data_dir)

    @property
    def model_preset(self) -> Preset:
        return PRESETS[self.preset]

    @property
    def tokenizer_kind(self) -> str:
        return self.model_preset.tokenizer if self.tokenizer == "auto" else self.tokenizer

    @property
    def viz_dir(self) -> Path:
        return self.output_dir / "training_viz"

    @property
    def last_step(self) -> int:
        """Steps this run ends after: `total_steps`, or `stop_after` when given."""
        return self.stop_after or self.total_steps

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def as_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings) for checkpoints and logs."""
        out = {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items() if k != "extra"}
        out.update(self.extra)
        return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept as written, and every flag's default shown."""


def add_shared_options(parser: argparse.ArgumentParser) -> None:
    """The flags both trainers have, with the seed's defaults (viz every 50, checkpoint every 2000, samples every 5)."""
    run = parser.add_argument_group("run")
    run.add_argument("--preset", default="full", choices=sorted(PRESETS), help="model size")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda when available")
    run.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="bf16 autocast for forward and loss")
    run.add_argument("--seed", type=int, default=42, help="seeds Python, NumPy and torch (model init)")
    run.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of AdamW")
    run.add_argument("--warmup-steps", type=int, default=100, help="linear warmup, then cosine decay to 10%%")
    run.add_argument("--test", action="store_true", help="test mode: a few steps at the tiny preset, small intervals")
    run.add_argument("--resume", type=Path, default=None, help="checkpoint_step_N.bin of a 3-file checkpoint set")
    run.add_argument("--stop-after", type=int, default=None,
                     help="stop after N steps while the schedule still spans the whole run (resume checks)")
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=Path, default=Path("data/shards"),
                      help="text shards (shard_*.txt); a synthetic corpus is written there if none exists")
    data.add_argument("--tokenizer", default="auto", choices=("auto", "byte", "sentencepiece"),
                      help="auto: the preset's (full: sentencepiece, 32,000 pieces; tiny: byte)")
    data.add_argument("--fetch-timeout", type=float, default=30.0, help="seconds a document fetch may take")
    data.add_argument("--corpus-seed", type=int, default=0, help="seed of the synthetic corpus")
    out = parser.add_argument_group("monitoring and output")
    out.add_argument("--output-dir", type=Path, default=Path("."),
                     help="training_viz/ and checkpoints/ are written here")
    out.add_argument("--viz-interval", type=int, default=50, help="charts every N steps")
    out.add_argument("--checkpoint-interval", type=int, default=2000, help="3-file checkpoint every N steps")
    out.add_argument("--display-every", type=int, default=5, help="text sample every N steps")
    out.add_argument("--viz-dpi", type=int, default=60, help="resolution of the chart PNGs")


def apply_test_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """With --test, flags still at their defaults take TEST_OVERRIDES' values."""
    if args.test:
        for dest, value in TEST_OVERRIDES.items():
            if hasattr(args, dest) and getattr(args, dest) == parser.get_default(dest):
                setattr(args, dest, Path(value) if dest in ("output_dir", "data_dir") else value)
    return args


def config_from_args(args: argparse.Namespace, total_steps: int, **extra: Any) -> TrainingConfig:
    """A TrainingConfig from the shared flags; the trainer gives the step count and its own options."""
    return TrainingConfig(
        total_steps=total_steps, output_dir=args.output_dir, data_dir=args.data_dir, preset=args.preset,
        tokenizer=args.tokenizer, device=args.device, dtype=args.dtype, seed=args.seed, lr=args.lr,
        warmup_steps=args.warmup_steps, viz_interval=args.viz_interval, checkpoint_interval=args.checkpoint_interval,
        display_every=args.display_every, fetch_timeout=args.fetch_timeout, viz_dpi=args.viz_dpi,
        corpus_seed=args.corpus_seed, resume=args.resume, stop_after=args.stop_after, test=args.test, extra=extra)
