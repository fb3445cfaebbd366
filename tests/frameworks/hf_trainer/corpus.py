"""A synthetic text corpus, a character-level tokenizer built from it, and fixed-length LM blocks."""

from __future__ import annotations

import random

from datasets import Dataset

_SUBJECTS = ["the cat", "a dog", "my neighbour", "the old sailor", "every child", "the baker"]
_VERBS = ["sees", "bakes", "finds", "paints", "carries", "forgets"]
_OBJECTS = ["a red boat", "the bread", "two apples", "the map", "a small key", "the lantern"]


def synthetic_text(n_sentences: int, seed: int = 1234) -> list[str]:
    """Sentences from a fixed grammar; a private RNG so the corpus never depends on the run's seed."""
    rng = random.Random(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}." for _ in range(n_sentences)]


class CharTokenizer:
    """Character-level ids; id 0 is padding, 1 is end of text."""

    pad_token_id, eos_token_id = 0, 1

    def __init__(self, texts: list[str]) -> None:
        self.vocab = {ch: i + 2 for i, ch in enumerate(sorted(set("".join(texts))))}

    def __len__(self) -> int:
        return len(self.vocab) + 2

    def encode(self, text: str) -> list[int]:
        return [self.vocab[ch] for ch in text] + [self.eos_token_id]


def lm_blocks(texts: list[str], tokenizer: CharTokenizer, block_size: int) -> Dataset:
    """Concatenate and cut into blocks (as run_clm's group_texts): every row has the same length."""
    ids = [t for text in texts for t in tokenizer.encode(text)]
    n = len(ids) // block_size
    rows = [ids[i * block_size:(i + 1) * block_size] for i in range(n)]
    return Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * block_size for _ in rows],
                              "labels": [list(r) for r in rows]})


def fast_tokenizer(texts: list[str]):  # noqa: ANN201 -- transformers is imported lazily, as its users do
    """The same character vocabulary as a `PreTrainedTokenizerFast` (a BPE model without merges), for
    trainers that want a processing class (TRL's SFTTrainer)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    chars = CharTokenizer(texts)
    vocab = {"<pad>": chars.pad_token_id, "</s>": chars.eos_token_id, **chars.vocab}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[])),
                                   pad_token="<pad>", eos_token="</s>")
