"""Tokenizers of the language-model trainers: SentencePiece trained locally on the corpus shards, or a byte fallback.

SentencePiece (the seed's tokenizer, 32,000 pieces in the full preset) is an optional dependency: the
tiny preset defaults to the byte tokenizer so that tests and CPU pair runs need neither the package nor
a training pass. A SentencePiece model is trained once per data directory and vocabulary size and then
read back from `<data-dir>/tokenizer/spm-<vocab>.model`, so both trainers of a pair get the same pieces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

#: File name of a trained SentencePiece model inside `<data-dir>/tokenizer/`.
SPM_TEMPLATE = "spm-{vocab}.model"
#: Lines handed to the SentencePiece trainer at most; more only slows training without new pieces.
SPM_MAX_LINES = 200_000


class Tokenizer(Protocol):
    """What the trainers need of a tokenizer: ids of a text without specials, the special ids, and decoding."""

    name: str
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, then pad, bos and eos (259 ids); never trains or reads a file."""

    name = "byte"
    vocab_size = 259
    pad_id = 256
    bos_id = 257
    eos_id = 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special ids dropped and broken byte runs replaced (predictions are arbitrary ids)."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A trained SentencePiece model; ids 0-3 are unk, bos, eos and pad (fixed at training time)."""

    name = "sentencepiece"

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece as spm  # optional dependency: imported only when this tokenizer is asked for

        self.model_file = Path(model_file)
        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.vocab_size = self._sp.get_piece_size()
        self.pad_id, self.bos_id, self.eos_id = self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        specials = {self.pad_id, self.bos_id, self.eos_id}
        return self._sp.decode([int(i) for i in ids if int(i) not in specials and 0 <= int(i) < self.vocab_size])


def sentencepiece_available() -> bool:
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        return False
    return True


def train_sentencepiece(shards: Sequence[Path], vocab_size: int, model_file: Path) -> Path:
    """Train a unigram SentencePiece model on the shards' lines and write it to `model_file` (atomically).

    One thread: the unigram trainer's EM sums in thread order, and both trainers of a pair must get
    the same pieces from the same shards. `hard_vocab_limit=False` lets a small corpus end below the
    asked size instead of failing; the size actually reached is the model's `vocab_size`.
    """
    import sentencepiece as spm

    model_file.parent.mkdir(parents=True, exist_ok=True)
    prefix = model_file.with_name(f".{model_file.stem}.{os.getpid()}")
    spm.SentencePieceTrainer.train(
        input=",".join(str(s) for s in shards), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, num_threads=1, hard_vocab_limit=False,
        input_sentence_size=SPM_MAX_LINES, shuffle_input_sentence=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, minloglevel=2)
    os.replace(f"{prefix}.model", model_file)
    Path(f"{prefix}.vocab").unlink(missing_ok=True)
    return model_file


def load_tokenizer(kind: str, data_dir: Path, vocab_size: int, shards: Sequence[Path]) -> Tokenizer:
    """The tokenizer `kind` ("byte" or "sentencepiece") for the corpus in `data_dir`, training it if needed."""
    if kind == "byte":
        return ByteTokenizer()
    if kind != "sentencepiece":
        raise ValueError(f"--tokenizer {kind!r}: use byte or sentencepiece")
    if not sentencepiece_available():
        raise RuntimeError("--tokenizer sentencepiece needs the sentencepiece package "
                           "(pip install sentencepiece), or pass --tokenizer byte")
    model_file = data_dir / "tokenizer" / SPM_TEMPLATE.format(vocab=vocab_size)
    if not model_file.exists():
        train_sentencepiece(shards, vocab_size, model_file)
    return SentencePieceTokenizer(model_file)
