"""Target-side tokenization: the general-purpose block formatter and its fixed token set.

A label row (one code per target column) becomes a sequence of length N*S + 2:
BOS, then each present code's tokens padded with EOS to the block size S, then
S PADs for every absent block, then a final EOS (fact sheet section 4).
"""

from __future__ import annotations

import math
import string
from typing import Sequence

import numpy as np

UNK_IDX = 0
PAD_IDX = 1
BOS_IDX = 2
EOS_IDX = 3
SEP_IDX = 4
_FIRST_TOKEN_IDX = 5

# Between-code separator; excluded from the token set so it can never be a code character.
CODE_SEP = "&"
# Within-code separator used by --use-within-block-sep; excluded from the token set too.
WITHIN_BLOCK_SEP = ","


def build_token_set() -> list[str]:
    """Return the fixed, data-independent token list in index order (first entry -> index 5)."""
    numbers = [str(i) for i in range(-999, 1000)]
    letters = list(string.ascii_letters)
    punctuation = [c for c in string.punctuation if c not in (CODE_SEP, WITHIN_BLOCK_SEP)]
    return numbers + letters + punctuation


def _is_missing(value) -> bool:
    """None and float NaN both end a label row (pandas versions store either)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class BlockyFormatter:
    """Maps label rows to fixed-length block sequences.

    Contract: `transform_label` either returns a float array of length N*S+2 or raises
    ValueError; it never drops, reorders or deduplicates codes.
    """

    def __init__(self, target_cols: Sequence[str], block_size: int, use_within_block_sep: bool):
        # len() on purpose: upstream fails here when --target-cols is missing.
        self.max_num_codes = len(target_cols)
        self.target_cols = list(target_cols)
        self.block_size = block_size
        self.use_within_block_sep = use_within_block_sep
        tokens = build_token_set()
        self.map_char_idx = {tok: _FIRST_TOKEN_IDX + i for i, tok in enumerate(tokens)}
        self.map_idx_char = {idx: tok for tok, idx in self.map_char_idx.items()}
        max_idx = max(self.map_idx_char)
        self.num_classes = [max_idx + 1] * self.target_length

    @property
    def target_length(self) -> int:
        """Full sequence length, BOS and final EOS included."""
        return self.max_num_codes * self.block_size + 2

    def sanitize(self, row: Sequence) -> str:
        """Join codes with '&', stopping at the first missing value."""
        present = []
        for value in row:
            if _is_missing(value):
                break
            present.append(str(value))
        return CODE_SEP.join(present)

    def _tokenize_code(self, code: str) -> list[int]:
        pieces = code.split(WITHIN_BLOCK_SEP) if self.use_within_block_sep else list(code)
        if len(pieces) > self.block_size:
            raise ValueError(f"code {code!r} has {len(pieces)} tokens, more than block size {self.block_size}")
        try:
            idxs = [self.map_char_idx[p] for p in pieces]
        except KeyError as err:
            raise ValueError(f"code {code!r} holds token {err.args[0]!r}, which is not in the token set") from err
        return idxs + [EOS_IDX] * (self.block_size - len(idxs))

    def format_seq(self, joined: str) -> np.ndarray:
        """Turn an '&'-joined code string into the block sequence."""
        codes = joined.split(CODE_SEP) if joined else []
        if len(codes) > self.max_num_codes:
            raise ValueError(f"{len(codes)} codes but only {self.max_num_codes} blocks")
        seq = [BOS_IDX]
        for code in codes:
            seq.extend(self._tokenize_code(code))
        seq.extend([PAD_IDX] * (self.block_size * (self.max_num_codes - len(codes))))
        seq.append(EOS_IDX)
        # Upstream returns floats; the dataset casts to long.
        return np.array(seq, dtype=float)

    def transform_label(self, row: Sequence) -> np.ndarray:
        """Format one label row (values of the target columns, in order)."""
        return self.format_seq(self.sanitize(row))

    def is_shorter_than_block(self, row: Sequence, seq: np.ndarray) -> bool:
        """True when a code is EOS-filled before the final position.

        A lone first code '?' (the filler for a missing first label) is exempt as long
        as no EOS appears after the first block.
        """
        body = seq[:-1]
        if not (body == EOS_IDX).any():
            return False
        first = row[0] if len(row) else None
        if first == "?":
            return bool((body[1 + self.block_size:] == EOS_IDX).any())
        return True


def construct_general_purpose_formatter(block_size: int, target_cols: Sequence[str],
                                        use_within_block_sep: bool = False) -> BlockyFormatter:
    """Build the formatter finetune uses: N = len(target_cols) blocks of S = block_size tokens."""
    return BlockyFormatter(target_cols=target_cols, block_size=block_size,
                           use_within_block_sep=use_within_block_sep)
