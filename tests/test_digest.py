"""Tensor digests and scalar bits: bit-exact, dtype-agnostic, and order-sensitive only where promised."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity.capture.digest import digest_bytes, digest_tensors, float_bits, json_float, tensor_sums

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.int64, torch.bool]


def _tensor(dtype: torch.dtype, n: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(n, generator=g) > 0.5
    if dtype == torch.int64:
        return torch.randint(-1000, 1000, (n,), generator=g)
    return torch.randn(n, generator=g).to(dtype)


def _flip_lowest_bit(t: torch.Tensor, index: int = 0) -> torch.Tensor:
    """Copy of `t` with the lowest bit of one element flipped (bool: the element negated)."""
    out = t.clone()
    flat = out.view(-1)
    if t.dtype == torch.bool:
        flat[index] = ~flat[index]
        return out
    ints = flat.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    ints[index] ^= 1
    return out


def _with(t: torch.Tensor, values: dict[int, float]) -> torch.Tensor:
    for i, v in values.items():
        t[i] = v
    return t


def _sum64(t: torch.Tensor) -> int:
    return tensor_sums([t], weighted=False)[0]


def _wsum64(t: torch.Tensor) -> int:
    return tensor_sums([t], weighted=True)[0]


def _f64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


# -- bit-exactness ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 3, 7, 8, 13], ids=lambda n: f"n{n}")
def test_equal_tensors_equal_digests_one_bit_changes_them(dtype: torch.dtype, n: int) -> None:
    a, b = _tensor(dtype, n), _tensor(dtype, n)
    assert a is not b
    assert _sum64(a) == _sum64(b) and _wsum64(a) == _wsum64(b)
    assert digest_tensors([a]) == digest_tensors([b])
    changed = _flip_lowest_bit(a, index=n - 1)  # the last element sits next to the zero padding
    assert _sum64(changed) != _sum64(a)
    assert _wsum64(changed) != _wsum64(a)
    assert digest_tensors([changed]) != digest_tensors([a])
    assert digest_tensors([changed], weighted=True) != digest_tensors([a], weighted=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_padding_is_deterministic_for_odd_sizes(dtype: torch.dtype) -> None:
    # 5 elements of 1-4 bytes do not fill whole 8-byte words: the padding must be zeros, not garbage.
    t = _tensor(dtype, 5)
    assert len({_sum64(t.clone()) for _ in range(5)}) == 1
    assert _sum64(t) < 2 ** 64 and _wsum64(t) < 2 ** 64


def test_sum64_of_known_words() -> None:
    # Two float64 words: 1.0 = 0x3ff0..., 2.0 = 0x4000...; wsum64 mixes each word with its position
    # (splitmix64-style finaliser), written out here independently in plain Python integers.
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    w0, w1 = 0x3FF0000000000000, 0x4000000000000000
    assert _sum64(t) == (w0 + w1) % 2 ** 64

    def mix(word: int, i: int) -> int:
        z = (word + i * 0x9E3779B97F4A7C15) % 2 ** 64
        z ^= z >> 31
        z = (z * 0xBF58476D1CE4E5B9) % 2 ** 64
        return z ^ (z >> 29)

    assert _wsum64(t) == (mix(w0, 0) + mix(w1, 1)) % 2 ** 64
    # A 3-byte bool tensor is one zero-padded word, little-endian.
    assert _sum64(torch.tensor([True, False, True])) == 0x010001


def test_digest_includes_dtype_and_shape() -> None:
    t = torch.zeros(4, dtype=torch.float32)
    assert digest_tensors([t]) != digest_tensors([t.view(2, 2)])
    assert digest_tensors([t]) != digest_tensors([t.view(torch.int32)])
    assert digest_tensors([t]) != digest_tensors([t, t])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_empty_and_zero_dim_tensors(dtype: torch.dtype) -> None:
    assert _sum64(torch.empty(0, dtype=dtype)) == 0
    scalar = _tensor(dtype, 1).reshape(())
    assert _sum64(scalar) == _sum64(scalar.reshape(1))


# -- order ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.int64], ids=str)
def test_wsum64_is_order_sensitive_sum64_is_not(dtype: torch.dtype) -> None:
    # 8-byte elements: one element per word, so a permutation of elements permutes whole words.
    t = _tensor(dtype, 9)
    perm = t.flip(0)
    assert _sum64(perm) == _sum64(t)
    assert _wsum64(perm) != _wsum64(t)
    assert digest_tensors([perm], weighted=True) != digest_tensors([t], weighted=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_wsum64_sees_swapped_samples_in_a_batch(dtype: torch.dtype) -> None:
    batch = _tensor(dtype, 4 * 6).view(4, 6)
    swapped = batch[[1, 0, 2, 3]]
    assert _wsum64(swapped) != _wsum64(batch)


def test_order_of_tensors_matters_for_the_combined_digest() -> None:
    a, b = _tensor(torch.float32, 4, seed=1), _tensor(torch.float32, 4, seed=2)
    assert digest_tensors([a, b]) != digest_tensors([b, a])


@pytest.mark.parametrize("make", [
    lambda: torch.tensor([1.0, -1.0], dtype=torch.float64),
    lambda: torch.tensor([0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, -3.0], dtype=torch.bfloat16),
    lambda: _with(torch.zeros(514, dtype=torch.float32), {1: 1.0, 513: 2.0}),
], ids=["f64-sign-swap", "bf16-sign-swap", "f32-512-apart"])
def test_wsum64_sees_every_swap_of_two_different_elements(make) -> None:
    t = make()
    nz = t.nonzero().view(-1).tolist()
    i, j = nz[0], nz[-1]
    assert t[i] != t[j]
    swapped = t.clone()
    swapped[i], swapped[j] = t[j], t[i]
    assert _wsum64(swapped) != _wsum64(t)


# -- layouts and special values ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_tensor_digests_like_its_contiguous_copy(dtype: torch.dtype) -> None:
    base = _tensor(dtype, 24).view(4, 6)
    for view in (base.t(), base[:, ::2], base[1:3, 1:5]):
        assert not view.is_contiguous()
        assert _sum64(view) == _sum64(view.contiguous())
        assert _wsum64(view) == _wsum64(view.contiguous())
        assert digest_tensors([view]) == digest_tensors([view.contiguous()])


def test_storage_offset_views_digest_their_own_elements() -> None:
    t = torch.arange(16, dtype=torch.float32)
    assert _sum64(t[4:8]) == _sum64(torch.arange(4, 8, dtype=torch.float32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64], ids=str)
def test_signed_zero_is_distinguished(dtype: torch.dtype) -> None:
    pos = torch.zeros(3, dtype=dtype)
    neg = pos.clone()
    neg[1] = -0.0
    assert torch.equal(pos, neg)  # equal as numbers ...
    assert _sum64(pos) != _sum64(neg)  # ... not as bits
    assert digest_tensors([pos]) != digest_tensors([neg])
    assert float_bits(neg[1:2])["bits"] != float_bits(pos[1:2])["bits"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_nan_payloads_compare_by_bits(dtype: torch.dtype) -> None:
    ints = {torch.float32: torch.int32, torch.float64: torch.int64}[dtype]
    a = torch.tensor([float("nan"), 1.0], dtype=dtype)
    same = a.clone()
    other_payload = a.clone()
    other_payload.view(ints)[0] ^= 1
    assert math.isnan(float(other_payload[0]))
    assert _sum64(a) == _sum64(same)  # NaN != NaN numerically, but the same bits digest alike
    assert digest_tensors([a]) == digest_tensors([same])
    assert _sum64(a) != _sum64(other_payload)
    assert float_bits(a)["bits"] != float_bits(other_payload)["bits"]
    assert float_bits(a)["value"] == float_bits(other_payload)["value"] == "nan"


# -- hypothesis -------------------------------------------------------------------------------

_float32_arrays = hnp.arrays(np.float32, st.integers(1, 64),
                             elements=st.floats(width=32, allow_nan=True, allow_infinity=True))


@settings(max_examples=150, deadline=None)
@given(arr=_float32_arrays, data=st.data())
def test_digest_equal_for_equal_tensors_and_different_for_one_changed_element(arr: np.ndarray, data) -> None:
    a = torch.from_numpy(arr.copy())
    b = torch.from_numpy(arr.copy())
    assert digest_tensors([a]) == digest_tensors([b])
    assert digest_tensors([a], weighted=True) == digest_tensors([b], weighted=True)

    index = data.draw(st.integers(0, arr.size - 1), label="index")
    new_bits = data.draw(st.integers(0, 2 ** 32 - 1), label="new_bits")
    changed = arr.copy()
    changed.view(np.uint32)[index] = new_bits
    if changed.view(np.uint32)[index] == arr.view(np.uint32)[index]:
        return  # same bits drawn: not a change
    c = torch.from_numpy(changed)
    assert digest_tensors([c]) != digest_tensors([a])
    assert digest_tensors([c], weighted=True) != digest_tensors([a], weighted=True)


# -- scalar bits ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "dtype", "bits"), [
    (1.0, torch.float32, "3f800000"),
    (1.0, torch.bfloat16, "3f80"),
    (1.0, torch.float16, "3c00"),
    (-2.0, torch.float32, "c0000000"),
    (-0.0, torch.float32, "80000000"),
    (1.0, torch.float64, "3ff0000000000000"),
])
def test_float_bits_of_tensors(value: float, dtype: torch.dtype, bits: str) -> None:
    out = float_bits(torch.tensor(value, dtype=dtype))
    assert out == {"bits": bits, "dtype": str(dtype).replace("torch.", ""), "value": value}


def test_float_bits_of_python_float_is_float64() -> None:
    assert float_bits(1.0) == {"bits": "3ff0000000000000", "dtype": "float64", "value": 1.0}
    assert float_bits(0.1)["bits"] == f"{struct.unpack('<Q', struct.pack('<d', 0.1))[0]:016x}"


def test_float_bits_of_non_finite_values_uses_strings() -> None:
    assert float_bits(torch.tensor(float("inf")))["value"] == "inf"
    assert float_bits(torch.tensor(float("-inf")))["value"] == "-inf"
    nan = float_bits(torch.tensor(float("nan")))
    assert nan["value"] == "nan" and nan["bits"] == "7fc00000"
    assert float_bits(_f64(0x7FF0000000000001))["bits"] == "7ff0000000000001"


def test_float_bits_takes_the_first_element_of_a_tensor() -> None:
    assert float_bits(torch.tensor([[2.0, 3.0]]))["value"] == 2.0


@pytest.mark.parametrize(("x", "expected"), [
    (float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf"), (1.5, 1.5), (-0.0, -0.0), (0.0, 0.0),
])
def test_json_float(x: float, expected: float | str) -> None:
    out = json_float(x)
    assert out == expected and type(out) is type(expected)
    if expected == 0.0 and isinstance(expected, float):
        assert math.copysign(1.0, out) == math.copysign(1.0, expected)


def test_digest_bytes_is_crc32_hex() -> None:
    assert digest_bytes(b"") == "00000000"
    assert digest_bytes(b"abc") != digest_bytes(b"abd")
    assert len(digest_bytes(b"x" * 1000)) == 8
