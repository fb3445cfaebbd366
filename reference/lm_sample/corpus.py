"""Synthetic text corpus: N shards of documents, one document per line, written deterministically from a seed.

    python -m reference.lm_sample.corpus --out data/shards --shards 8 --docs-per-shard 1000 --seed 0

Stands in for the seed's streamed web corpus. Documents are sentences of pseudo-words drawn with a
Zipf law from a lexicon of syllable words, with numbers and punctuation, in lengths from a few words to
a few hundred (so one document per step sometimes pads and often truncates). Shard i depends only on
(seed, i): asking for more shards never changes the first ones.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
from pathlib import Path

SHARD_TEMPLATE = "shard_{index:05d}.txt"
SHARD_GLOB = "shard_*.txt"
_ONSETS = ("", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "st", "tr",
           "pl", "gr", "ch", "sh", "th", "br", "kl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ea", "y")
_CODAS = ("", "", "", "n", "r", "s", "l", "t", "m", "ng", "st", "rd")
#: Pseudo-words in the lexicon: enough distinct words for a 32,000-piece vocabulary to be worth learning.
LEXICON_SIZE = 40_000


def _lexicon(seed: int) -> list[str]:
    """LEXICON_SIZE distinct pseudo-words, most frequent first (rank order drives the Zipf draw)."""
    rng = random.Random(f"lexicon-{seed}")
    words: dict[str, None] = {}
    while len(words) < LEXICON_SIZE:
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        words["".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))] = None
    return list(words)


class CorpusWriter:
    """Writes shards of synthetic documents; one instance draws its lexicon once for all shards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.words = _lexicon(seed)
        self._cum_weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(self.words))))

    def _sentence(self, rng: random.Random) -> str:
        words = rng.choices(self.words, cum_weights=self._cum_weights, k=rng.randint(4, 18))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 2025)))
        if rng.random() < 0.15:
            words[rng.randrange(len(words))] += ","
        return " ".join(words).capitalize() + rng.choice((".", ".", ".", "!", "?"))

    def document(self, rng: random.Random) -> str:
        """One document on one line: 1 to ~30 sentences, short ones about a third of the time."""
        sentences = rng.randint(1, 2) if rng.random() < 0.3 else min(30, int(rng.expovariate(1 / 8)) + 1)
        return " ".join(self._sentence(rng) for _ in range(sentences))

    def write_shard(self, directory: Path, index: int, docs: int) -> Path:
        """Shard `index` with `docs` documents, written under a temporary name and renamed into place."""
        rng = random.Random(f"shard-{self.seed}-{index}")
        path = directory / SHARD_TEMPLATE.format(index=index)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text("".join(self.document(rng) + "\n" for _ in range(docs)), encoding="utf-8")
        os.replace(tmp, path)
        return path


def list_shards(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob(SHARD_GLOB))


def write_corpus(directory: str | Path, shards: int, docs_per_shard: int, seed: int) -> list[Path]:
    """Write `shards` shards of `docs_per_shard` documents into `directory` (created if missing)."""
    if shards < 1 or docs_per_shard < 1:
        raise ValueError(f"need at least one shard and one document per shard, got {shards} x {docs_per_shard}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    writer = CorpusWriter(seed)
    return [writer.write_shard(directory, i, docs_per_shard) for i in range(shards)]


def ensure_corpus(directory: str | Path, shards: int, docs_per_shard: int, seed: int) -> list[Path]:
    """The shards in `directory`; a directory that is missing or holds no shard gets a fresh synthetic corpus."""
    found = list_shards(Path(directory))
    return found or write_corpus(directory, shards, docs_per_shard, seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.lm_sample.corpus", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="directory for shard_00000.txt, ...")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--docs-per-shard", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    paths = write_corpus(args.out, args.shards, args.docs_per_shard, args.seed)
    size = sum(path.stat().st_size for path in paths)
    print(f"wrote {len(paths)} shards ({size / 1e6:.1f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
