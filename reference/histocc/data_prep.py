"""Data preparation for finetuning: CSV in; train/val files and the flat-class key out.

Follows fact sheet section 3: string-typed read, ' ' -> None in target columns, '?' for
a missing first code, formatter validation, a first-appearance code key that keeps NaN
(but not None) as a class, and a validation split drawn with random_state=42.
"""

from __future__ import annotations

import os

import pandas as pd

from .formatter import BlockyFormatter

TRAIN_FILE = "data_train.csv"
VAL_FILE = "data_val.csv"
KEY_FILE = "key.csv"


def prepare_target_cols(data: pd.DataFrame, formatter: BlockyFormatter, drop_bad_rows: bool,
                        allow_codes_shorter_than_block_size: bool) -> pd.DataFrame:
    """Clean the target columns and validate every row against the formatter."""
    cols = formatter.target_cols
    for col in cols:
        data[col] = data[col].replace(" ", None)
    # Every row needs at least one code; '?' is in the token set, so it formats.
    data[cols[0]] = data[cols[0]].fillna("?")

    rows = data[cols].values.tolist()
    formatted, bad = {}, []
    for idx, row in zip(data.index, rows):
        try:
            formatted[idx] = formatter.transform_label(row)
        except Exception:  # upstream counts any failure as a bad label
            bad.append(idx)
    if bad:
        if not drop_bad_rows:
            raise ValueError(f"{len(bad)} rows have labels the formatter rejects "
                             f"(first index {bad[0]}); pass --drop-bad-labels to drop them")
        print(f"Dropping {len(bad)} rows with bad labels")
        data = data.drop(index=bad)

    if not allow_codes_shorter_than_block_size:
        short = [idx for idx, row in zip(data.index, data[cols].values.tolist())
                 if formatter.is_shorter_than_block(row, formatted[idx])]
        if short:
            raise ValueError(f"{len(short)} rows hold codes shorter than the block size "
                             f"(first index {short[0]}); pass --allow-codes-shorter-than-block-size")
    return data


def build_code_key(data: pd.DataFrame, target_cols: list[str]) -> dict:
    """Map each distinct code to a flat class index, in row-major first-appearance order.

    None is dropped but NaN is not: NaN becomes a class whenever a later target cell is
    missing (it is never a positive label, since the multi-hot builder stops at NaN).
    """
    flat = pd.unique(data[target_cols].values.ravel())
    codes = [c for c in flat if c is not None]
    return {code: i for i, code in enumerate(codes)}


def _read_key(path: str) -> dict:
    key_df = pd.read_csv(path, dtype={"system_code": str, "code": int})
    return dict(zip(key_df["system_code"], key_df["code"]))


def prepare_data(dataset: str, input_col: str, formatter: BlockyFormatter, save_path: str,
                 share_val: float, language: str = "unk", language_col: str | None = None,
                 drop_bad_rows: bool = False,
                 allow_codes_shorter_than_block_size: bool = False) -> dict:
    """Write data_train.csv, data_val.csv and key.csv to save_path; return the code key.

    If all three files already exist, nothing is re-prepared and the key is re-read.
    """
    if not os.path.isdir(save_path):
        os.makedirs(save_path, exist_ok=False)
    files = [os.path.join(save_path, f) for f in (TRAIN_FILE, VAL_FILE, KEY_FILE)]
    if all(os.path.isfile(f) for f in files):
        print(f"Prepared data found in {save_path}; skipping preparation")
        return _read_key(files[2])

    if language_col is not None and language != "unk":
        raise ValueError("set either --language or --language-col, not both")

    data = pd.read_csv(dataset, dtype=str)
    data["lang"] = data[language_col] if language_col is not None else language
    target_cols = formatter.target_cols
    data = data[[input_col, *target_cols, "lang"]].rename(columns={input_col: "occ1"})

    data = prepare_target_cols(data, formatter, drop_bad_rows, allow_codes_shorter_than_block_size)
    key = build_code_key(data, target_cols)

    # pandas' sample draws from a NumPy RandomState(42); the global RNGs are untouched.
    data_val = data.sample(n=int(len(data) * share_val), random_state=42)
    data_train = data.drop(index=data_val.index)
    data_train.to_csv(files[0], index=False)
    data_val.to_csv(files[1], index=False)
    pd.DataFrame({"system_code": list(key.keys()), "code": list(key.values())}).to_csv(files[2], index=False)
    return key

