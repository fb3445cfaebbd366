"""Input side: augmentation, CANINE input encoding and the in-memory finetuning dataset.

One item holds the augmented input string, its 128-character CANINE encoding, the
block-sequence target and the multi-hot flat target (fact sheet section 5).
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .attacker import AttackerClass
from .formatter import BlockyFormatter

MAX_INPUT_LEN = 128
# Literal characters, not CANINE's separator (whose id is a private-use code point).
LANG_SEP = "[SEP]"


# CANINE's special ids are private-use code points (U+E000 CLS, U+E001 SEP); pad id is 0.
CLS_ID = 0xE000
SEP_ID = 0xE001
PAD_ID = 0


class CanineCodepointEncoder:
    """What CanineTokenizer produces for finetune's arguments, without building it.

    CanineTokenizer() takes seconds to construct (it enumerates every Unicode code point
    into a vocabulary); its output for these settings is: CLS, one code point per
    character (at most 126), SEP, zero padding to 128, mask 1 on real tokens.
    tests/reference/test_histocc_data.py checks equality with CanineTokenizer itself.
    """

    def __call__(self, text: str) -> dict[str, torch.Tensor]:
        ids = [CLS_ID, *(ord(c) for c in text[: MAX_INPUT_LEN - 2]), SEP_ID]
        mask = [1] * len(ids) + [0] * (MAX_INPUT_LEN - len(ids))
        ids += [PAD_ID] * (MAX_INPUT_LEN - len(ids))
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "attention_mask": torch.tensor(mask, dtype=torch.long)}


def load_tokenizer() -> CanineCodepointEncoder:
    """Upstream loads CanineTokenizer from the Hub; this encoder gives identical ids offline."""
    return CanineCodepointEncoder()


def encode_input(tokenizer, text: str) -> dict[str, torch.Tensor]:
    """Encode one string to [128] input_ids and attention_mask (CLS ... SEP, zero-padded)."""
    return tokenizer(text)


def encode_with_canine_tokenizer(tokenizer, text: str) -> dict[str, torch.Tensor]:
    """The upstream call on a real CanineTokenizer (transformers 5 dropped `encode_plus`;
    the call interface takes the same arguments). Used by tests to pin the encoder above."""
    enc = tokenizer(
        text,
        add_special_tokens=True,
        padding="max_length",
        max_length=MAX_INPUT_LEN,
        truncation=True,
        return_attention_mask=True,
        return_token_type_ids=False,
        return_tensors="pt",
    )
    return {"input_ids": enc["input_ids"].flatten(), "attention_mask": enc["attention_mask"].flatten()}


def build_word_list(descriptions, sort_words: bool) -> list[str]:
    """Whitespace tokens of the unique descriptions, for the word-insertion attack.

    Upstream's order comes from a set and so varies with PYTHONHASHSEED. sort_words
    (addition, on under --seed) fixes it so seeded runs repeat without PYTHONHASHSEED.
    """
    words = list({w for text in set(descriptions) for w in text.split()})
    return sorted(words) if sort_words else words


class OccDatasetMixerInMemMultipleFiles(Dataset):
    """Finetuning dataset over one or more prepared CSV files, held in memory.

    Contract: `__getitem__` draws randomness only when `training` is True, and only from
    Python's global `random`, in the order: attack, (strip), unknown-language swap.
    """

    def __init__(self, fnames: list[str], formatter: BlockyFormatter, tokenizer,
                 training: bool, target_cols: list[str], map_code_label: dict,
                 alt_prob: float = 0.3, n_trans: int = 3, unk_lang_prob: float = 0.25,
                 sort_word_list: bool = False):
        self.frame = pd.concat([self._read(f, target_cols) for f in fnames], ignore_index=True)
        self.formatter = formatter
        self.tokenizer = tokenizer
        self.training = training
        self.target_cols = list(target_cols)
        self.map_code_label = map_code_label
        self.num_classes = len(map_code_label)
        self.alt_prob = alt_prob
        self.n_trans = n_trans
        self.unk_lang_prob = unk_lang_prob
        word_list = build_word_list(self.frame["occ1"].tolist(), sort_word_list)
        self.attacker = AttackerClass(word_list)

    @staticmethod
    def _read(fname: str, target_cols: list[str]) -> pd.DataFrame:
        # The identity converter keeps an empty description as '' rather than NaN.
        return pd.read_csv(
            fname,
            usecols=["occ1", "lang", *target_cols],
            dtype={"lang": str, **{c: str for c in target_cols}},
            converters={"occ1": lambda x: x},
        )

    def __len__(self) -> int:
        return len(self.frame)

    def _input_string(self, occ: str, lang: str) -> str:
        if self.training:
            occ = self.attacker.attack(occ, alt_prob=self.alt_prob, n_trans=self.n_trans)
            occ = occ.strip("'[]")
            if random.random() < self.unk_lang_prob:
                lang = "unk"
        return lang + LANG_SEP + occ

    def _multi_hot(self, codes: list) -> torch.Tensor:
        target = np.zeros(self.num_classes, dtype=np.float32)
        for code in codes:
            if pd.isna(code):
                break
            target[self.map_code_label[str(code)]] = 1
        return torch.from_numpy(target)

    def __getitem__(self, idx: int) -> dict:
        row = self.frame.iloc[idx]
        codes = [row[c] for c in self.target_cols]
        target_seq2seq = torch.tensor(self.formatter.transform_label(codes)).long()
        text = self._input_string(row["occ1"], row["lang"])
        enc = encode_input(self.tokenizer, text)
        return {
            "occ1": text,
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "targets_seq2seq": target_seq2seq,
            "targets_linear": self._multi_hot(codes),
        }


def build_datasets(save_path_files: tuple[str, str], formatter: BlockyFormatter, key: dict,
                   target_cols: list[str], sort_word_list: bool = False):
    """Training set (augmented, `training=True` as upstream hard-codes) and validation set."""
    tokenizer = load_tokenizer()
    train_file, val_file = save_path_files
    dataset_train = OccDatasetMixerInMemMultipleFiles(
        [train_file], formatter, tokenizer, training=True, target_cols=target_cols,
        map_code_label=key, sort_word_list=sort_word_list)
    dataset_val = OccDatasetMixerInMemMultipleFiles(
        [val_file], formatter, tokenizer, training=False, target_cols=target_cols,
        map_code_label=key, sort_word_list=sort_word_list)
    return dataset_train, dataset_val


def build_loaders(dataset_train: Dataset, dataset_val: Dataset, batch_size: int,
                  train_sampler=None) -> tuple[DataLoader, DataLoader]:
    """Upstream loaders: 0 workers, no pinning, shuffled training unless a sampler is given."""
    train_loader = DataLoader(dataset_train, batch_size=batch_size, shuffle=train_sampler is None,
                              sampler=train_sampler, num_workers=0, pin_memory=False)
    val_loader = DataLoader(dataset_val, batch_size=batch_size, shuffle=False,
                            num_workers=0, pin_memory=False)
    return train_loader, val_loader
