"""Fidelity of the histocc formatter, data preparation, input encoding and dataset to the fact sheet."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.histocc.data_prep import prepare_data
from reference.histocc.dataset import (CanineCodepointEncoder, OccDatasetMixerInMemMultipleFiles,
                                       encode_with_canine_tokenizer, load_tokenizer)
from reference.histocc.formatter import BOS_IDX, EOS_IDX, PAD_IDX, construct_general_purpose_formatter
from reference.histocc.make_data import TARGET_COLS, make_rows, write_csv

FACT_SHEET_INDICES = {"-999": 5, "-1": 1003, "0": 1004, "9": 1013, "10": 1014, "999": 2003, "a": 2004,
                      "z": 2029, "A": 2030, "Z": 2055, "-": 2066, ".": 2067, "?": 2074}


def _write(path, rows, header=("occ1", "lang", "c1", "c2")):
    pd.DataFrame(rows, columns=list(header)).to_csv(path, index=False)
    return str(path)


def test_token_indices_match_fact_sheet():
    fmt = construct_general_purpose_formatter(5, ["a", "b"])
    assert {tok: fmt.map_char_idx[tok] for tok in FACT_SHEET_INDICES} == FACT_SHEET_INDICES
    assert len(fmt.map_char_idx) == 2081
    assert "&" not in fmt.map_char_idx and "," not in fmt.map_char_idx
    assert fmt.num_classes == [2086] * (2 * 5 + 2)


def test_sequence_layout_eos_fill_and_pad_blocks():
    fmt = construct_general_purpose_formatter(3, ["a", "b", "c"])
    seq = fmt.transform_label(["9a", float("nan"), "1"])  # stops at the first missing code
    i = fmt.map_char_idx
    assert seq.dtype.kind == "f"
    assert seq.tolist() == [BOS_IDX, i["9"], i["a"], EOS_IDX] + [PAD_IDX] * 6 + [EOS_IDX]


def test_within_block_separator_uses_multi_character_tokens():
    fmt = construct_general_purpose_formatter(2, ["a"], use_within_block_sep=True)
    assert fmt.transform_label(["-1,14"]).tolist() == [BOS_IDX, 1003, 1018, EOS_IDX]
    plain = construct_general_purpose_formatter(2, ["a"])
    assert plain.transform_label(["-1"]).tolist() == [BOS_IDX, 2066, 1005, EOS_IDX]


@pytest.mark.parametrize("code", ["123456", "a b", "x&"])
def test_formatter_rejects_long_or_unknown_codes(code):
    with pytest.raises(ValueError):
        construct_general_purpose_formatter(5, ["a"]).transform_label([code])


def test_short_code_rule_exempts_lone_question_mark():
    fmt = construct_general_purpose_formatter(3, ["a", "b"])
    for row, short in [(["?", None], False), (["?", "12"], True), (["123", "45"], True), (["123", None], False)]:
        assert fmt.is_shorter_than_block(row, fmt.transform_label(row)) is short


def test_prepare_data_key_order_nan_class_and_split(tmp_path):
    rows = [["farmer", "en", "111", " "], ["smith", "en", "222", "111"], ["x", "da", " ", " "],
            ["y", "da", "333", ""], ["z", "en", "222", "444"]] * 4
    src = _write(tmp_path / "in.csv", rows)
    fmt = construct_general_purpose_formatter(3, ["c1", "c2"])
    key = prepare_data(src, "occ1", fmt, str(tmp_path / "run"), 0.25, language_col="lang")

    codes = list(key)
    # Row-major first appearance; a missing later cell becomes a NaN class; missing first -> '?'.
    assert codes[0] == "111" and math.isnan(codes[1]) and codes[2:] == ["222", "?", "333", "444"]
    assert list(key.values()) == list(range(6))
    written = pd.read_csv(tmp_path / "run" / "key.csv", dtype={"system_code": str})
    assert written["system_code"].isna().tolist() == [False, True, False, False, False, False]

    val = pd.read_csv(tmp_path / "run" / "data_val.csv", dtype=str)
    train = pd.read_csv(tmp_path / "run" / "data_train.csv", dtype=str)
    expected_val_idx = pd.DataFrame(range(20)).sample(n=5, random_state=42).index.tolist()
    assert val["occ1"].tolist() == [rows[i][0] for i in expected_val_idx]
    assert len(train) == 15 and list(train.columns) == ["occ1", "c1", "c2", "lang"]
    # A second call finds the prepared files and re-reads the key.
    again = prepare_data(src, "occ1", fmt, str(tmp_path / "run"), 0.25, language_col="lang")
    assert list(again.values()) == list(range(6)) and math.isnan(list(again)[1])


def test_prepare_data_rejections(tmp_path):
    fmt = construct_general_purpose_formatter(3, ["c1", "c2"])
    bad = _write(tmp_path / "bad.csv", [["a", "en", "1234", " "], ["b", "en", "111", " "]])
    with pytest.raises(ValueError, match="drop-bad-labels"):
        prepare_data(bad, "occ1", fmt, str(tmp_path / "r1"), 0.5)
    key = prepare_data(bad, "occ1", fmt, str(tmp_path / "r2"), 0.5, drop_bad_rows=True)
    # ' ' -> None is stored as NaN by pandas >= 3's string dtype, so it becomes a class.
    assert list(key)[0] == "111" and len(key) == (2 if pd.__version__ >= "3" else 1)
    short = _write(tmp_path / "short.csv", [["a", "en", "11", " "], ["b", "en", "111", " "]])
    with pytest.raises(ValueError, match="shorter"):
        prepare_data(short, "occ1", fmt, str(tmp_path / "r3"), 0.5)
    with pytest.raises(ValueError, match="not both"):
        prepare_data(short, "occ1", fmt, str(tmp_path / "r4"), 0.5, language="en", language_col="lang")


@pytest.fixture(scope="module")
def canine_tokenizer():
    from transformers import CanineTokenizer

    return CanineTokenizer()


def test_encoder_fact_sheet_example():
    enc = CanineCodepointEncoder()("en[SEP]farmer")
    assert enc["input_ids"][:16].tolist() == [57344, 101, 110, 91, 83, 69, 80, 93, 102, 97, 114, 109, 101,
                                              114, 57345, 0]
    assert enc["attention_mask"].sum().item() == 15 and enc["input_ids"].shape == (128,)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200))
def test_encoder_equals_canine_tokenizer(canine_tokenizer, text):
    want = encode_with_canine_tokenizer(canine_tokenizer, text)
    got = CanineCodepointEncoder()(text)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_dataset_items_and_rng_use(tmp_path):
    write_csv(str(tmp_path / "syn.csv"), make_rows(40, seed=3))
    fmt = construct_general_purpose_formatter(5, TARGET_COLS)
    key = prepare_data(str(tmp_path / "syn.csv"), "occ1", fmt, str(tmp_path / "run"), 0.1, language_col="lang")
    files = [str(tmp_path / "run" / "data_train.csv")]
    kwargs = dict(formatter=fmt, tokenizer=load_tokenizer(), target_cols=TARGET_COLS, map_code_label=key)
    val = OccDatasetMixerInMemMultipleFiles(files, training=False, **kwargs)
    train = OccDatasetMixerInMemMultipleFiles(files, training=True, sort_word_list=True, **kwargs)

    state = random.getstate()
    item = val[0]
    assert random.getstate() == state, "validation items must not draw randomness"
    row = val.frame.iloc[0]
    assert item["occ1"] == f"{row['lang']}[SEP]{row['occ1']}"
    assert item["targets_seq2seq"].dtype == torch.long and item["targets_seq2seq"].shape == (17,)
    assert item["targets_linear"].sum().item() == sum(isinstance(c, str) for c in row[TARGET_COLS])
    assert item["input_ids"].dtype == torch.long and item["attention_mask"].shape == (128,)

    random.seed(7)
    first = [train[i]["occ1"] for i in range(len(train))]
    random.seed(7)
    assert [train[i]["occ1"] for i in range(len(train))] == first
    assert first != [val[i]["occ1"] for i in range(len(val))], "augmentation never fired"


def test_make_data_is_deterministic_with_one_to_three_codes():
    rows = make_rows(300, seed=11)
    assert rows == make_rows(300, seed=11) and rows != make_rows(300, seed=12)
    counts = {sum(c != " " for c in r[2:]) for r in rows}
    assert counts == {0, 1, 2, 3}  # 0: the few rows with no first code
