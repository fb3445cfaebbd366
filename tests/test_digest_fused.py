"""The fused digests (`parity.capture.fused`, `digest.state_digests`) equal the per-tensor ones bit for bit."""

from __future__ import annotations

import hashlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.capture import digest, fused
from parity.capture.digest import PendingDigest, Transfer, combine, resolve_all, state_digests

MASK = (1 << 64) - 1
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.uint8, torch.int8, torch.bool]
SHAPES = [(), (0,), (1,), (3,), (5, 3), (7, 9), (13,), (129,), (4, 64), (33, 17)]


def _random(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random bits (every bit pattern, NaNs and negative zeros included) in the dtype and shape."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    width = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (*shape, width), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(shape)


def _words_from_bytes(t: torch.Tensor) -> int:
    """sum64 from its definition: the bytes zero-padded to 8-byte little-endian words, summed mod 2**64."""
    data = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    data += bytes(-len(data) % 8)
    return sum(int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)) & MASK


def _elements_from_bytes(t: torch.Tensor) -> int:
    """The element sum from its definition: each element's bits as a signed integer (unsigned for 1 byte)."""
    width = t.element_size()
    data = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return sum(int.from_bytes(data[i:i + width], "little", signed=width > 1) for i in range(0, len(data), width)) & MASK


def _per_tensor(tensors: list[torch.Tensor], elements: bool = False, extra: tuple = ()) -> PendingDigest:
    """The per-tensor implementation every step used before the fused path."""
    pending = PendingDigest(tensors, weighted=False, extra=extra, elements=elements)
    resolve_all([pending])
    return pending


def _fused_sums(tensors: list[torch.Tensor], kinds: tuple[str, ...], use_torch: bool) -> list[list[int]]:
    out = []
    for ints, blocks in fused.SumPlan(tensors, use_torch).run(kinds):
        ints = list(ints)
        for positions, vector in blocks:
            for i, v in zip(positions, vector.tolist()):
                ints[i] = v & MASK
        out.append(ints)
    return out


@pytest.fixture(params=["numpy", "torch", "torch-small-rows"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Which fused path: numpy (CPU), torch (the device path run on the CPU), or torch with tiny rows and
    thresholds, so that in-place bodies, partial last rows and several buffers of small tensors all occur."""
    if request.param == "torch-small-rows":
        monkeypatch.setattr(fused, "BIG_BYTES", 64)
        monkeypatch.setattr(fused, "ROW_BYTES", 32)
        monkeypatch.setattr(fused, "SMALL_ROW_BYTES", 16)
        monkeypatch.setattr(fused, "CHUNK_BYTES", 96)
    return request.param != "numpy"


def _check(tensors: list[torch.Tensor], use_torch: bool) -> None:
    words, elements = _fused_sums(tensors, (fused.WORDS, fused.ELEMENTS), use_torch)
    assert words == [_words_from_bytes(t) for t in tensors]
    assert elements == [_elements_from_bytes(t) for t in tensors]
    assert words == _per_tensor(tensors).sums
    assert elements == _per_tensor(tensors, elements=True).sums


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_and_shape_matches_the_definition_and_the_per_tensor_digest(dtype: torch.dtype, path: bool) -> None:
    _check([_random(dtype, shape, seed) for seed, shape in enumerate(SHAPES)], path)


def test_non_contiguous_mixed_and_big_tensors(path: bool) -> None:
    base = _random(torch.float32, (40, 70), 1)
    tensors = [base.t(), base[:, ::3], _random(torch.bfloat16, (300, 257), 2), base[5:9],
               _random(torch.float16, (3, 5, 7), 3).permute(2, 0, 1), _random(torch.bool, (1001,), 4),
               _random(torch.int64, (0, 3), 5), _random(torch.float32, (2, 3), 6).expand(4, 2, 3)]
    _check(tensors, path)


def test_views_that_start_off_an_8_byte_boundary(path: bool) -> None:
    flat = _random(torch.bfloat16, (4099,), 7)
    tensors = [flat[1:], flat[3:3 + 2048], flat[2:4098].view(64, 64), _random(torch.float32, (601,), 8)[1:]]
    words, elements = _fused_sums(tensors, (fused.WORDS, fused.ELEMENTS), path)
    assert words == [_words_from_bytes(t) for t in tensors]
    assert elements == [_elements_from_bytes(t) for t in tensors]


def test_an_empty_list_and_only_empty_tensors(path: bool) -> None:
    assert _fused_sums([], (fused.WORDS,), path) == [[]]
    _check([torch.empty(0), torch.empty(0, 5, dtype=torch.bfloat16)], path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 9), max_size=3), st.integers(0, 2**31),
                          st.booleans()), max_size=6),
       st.sampled_from(["numpy", "torch", "torch-small-rows"]))
def test_hypothesis_lists_of_tensors(specs: list, path: str) -> None:
    tensors = []
    for dtype, shape, seed, transpose in specs:
        t = _random(dtype, tuple(shape), seed)
        tensors.append(t.t() if transpose and t.dim() == 2 else t)
    saved = fused.BIG_BYTES, fused.ROW_BYTES, fused.SMALL_ROW_BYTES, fused.CHUNK_BYTES
    try:
        if path == "torch-small-rows":
            fused.BIG_BYTES, fused.ROW_BYTES, fused.SMALL_ROW_BYTES, fused.CHUNK_BYTES = 24, 8, 8, 40
        _check(tensors, path != "numpy")
    finally:
        fused.BIG_BYTES, fused.ROW_BYTES, fused.SMALL_ROW_BYTES, fused.CHUNK_BYTES = saved


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool], ids=str)
def test_any_single_bit_flip_changes_both_sums(dtype: torch.dtype, path: bool) -> None:
    t = _random(dtype, (37,), 9)
    words, elements = _fused_sums([t], (fused.WORDS, fused.ELEMENTS), path)
    width = t.element_size()
    for bit in range(0, 37 * width * 8, 1 if dtype == torch.bool else 7):
        if dtype == torch.bool and bit % 8:
            continue  # a bool element has one meaningful bit
        flipped = t.clone()
        flipped.view(torch.uint8).reshape(-1)[bit // 8] ^= 1 << (bit % 8)
        w2, e2 = _fused_sums([flipped], (fused.WORDS, fused.ELEMENTS), path)
        assert w2 != words and e2 != elements, bit


def test_state_digests_equal_the_per_tensor_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    params = [_random(torch.float32, (6, 5), 1), _random(torch.bfloat16, (7,), 2), _random(torch.float32, (), 3)]
    state = [_random(torch.float32, (6, 5), 4), torch.tensor(3.0), _random(torch.bfloat16, (7,), 5)]
    extra = [("momentum_buffer", "None")]
    expected = (_per_tensor(params).value, _per_tensor(state, extra=tuple(extra)).value, _per_tensor(params, elements=True).sums)
    for use_torch in (False, True):
        monkeypatch.setattr(digest, "FUSED_TORCH_ON_CPU", use_torch)
        got = state_digests(fused.PlanCache(), params, state, extra)
        resolve_all(got)
        assert (got[0].value, got[1].value, got[2].sums) == expected


def test_a_cached_plan_sees_in_place_updates_and_rebuilds_on_new_storage(path: bool) -> None:
    cache = fused.PlanCache()
    p = torch.nn.Parameter(_random(torch.float32, (50, 3), 1))
    first = cache.plan("params", [p], [p], path)
    with torch.no_grad():
        p.add_(1.0)
    assert cache.plan("params", [p], [p], path) is first
    assert _run_plan(first) == _words_from_bytes(p)
    p.data = _random(torch.float32, (150,), 2)  # same object, new memory and shape
    second = cache.plan("params", [p], [p], path)
    assert second is not first and _run_plan(second) == _words_from_bytes(p)


def _run_plan(plan: fused.SumPlan) -> int:
    ints, blocks = plan.run((fused.WORDS,))[0]
    return ints[0] if not blocks else blocks[0][1].tolist()[0] & MASK


def test_a_plan_over_a_non_contiguous_tensor_is_never_reused() -> None:
    cache = fused.PlanCache()
    t = _random(torch.float32, (8, 9), 1).t()
    assert cache.plan("state", [t], [t]) is not cache.plan("state", [t], [t])


def test_transfer_resolves_sums_copies_and_scalars_in_their_own_dtypes() -> None:
    tensors = [_random(torch.float32, (4,), 1), _random(torch.bfloat16, (3,), 2)]
    pending = PendingDigest._from_sums(fused.SumPlan(tensors, True).meta, fused.SumPlan(tensors, True).run((fused.WORDS,))[0])
    copy = digest.HostCopy(torch.arange(6).reshape(2, 3))
    scalars = [torch.tensor(1.5, dtype=torch.bfloat16), torch.tensor(float("nan")), torch.tensor(-0.0, dtype=torch.float64)]
    transfer = Transfer([pending], scalars, [copy])
    assert transfer.ready()
    host = transfer.finish()
    assert pending.value == _per_tensor(tensors).value
    assert [h.dtype for h in host] == [s.dtype for s in scalars]
    assert [h.reshape(1).view(torch.uint8).tolist() for h in host] == [s.reshape(1).view(torch.uint8).tolist() for s in scalars]
    assert copy.value.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_combine_hashes_exactly_what_one_update_per_part_did() -> None:
    parts = [("torch.float32", (3, 4), 12345), ("torch.bfloat16", (), 0), ("exp_avg", "None"), "é", 2**64 - 1]
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    assert combine(parts) == h.hexdigest()


# -- the recorder on the fused path ------------------------------------------------------------
def _train(directory, steps: int = 4) -> list[dict]:
    """A tiny Adam training under capture; the trace's step records."""
    import json

    import parity

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    with parity.record(directory):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    records = [json.loads(line) for path in sorted(directory.glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert records[-1]["type"] == "end" and records[-1]["steps"] == steps
    return records


def _steps(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("wall_ms", "peak_mem_bytes")} for r in records if r["type"] == "step"]


def test_traces_on_the_torch_path_and_written_a_step_late_equal_the_numpy_path(tmp_path, monkeypatch) -> None:
    expected = _steps(_train(tmp_path / "numpy"))
    assert len(expected) == 4 and all(r["params"] and r["optim_state"] and r["param_sums"] for r in expected)
    monkeypatch.setattr(digest, "FUSED_TORCH_ON_CPU", True)
    assert _steps(_train(tmp_path / "torch")) == expected
    # Copies that have not arrived yet: each step is written when the next one closes, the last at close.
    monkeypatch.setattr(Transfer, "ready", lambda self: False)
    assert _steps(_train(tmp_path / "late")) == expected


def test_a_step_whose_device_values_never_arrive_is_still_written(tmp_path, monkeypatch) -> None:
    def broken(self):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(Transfer, "ready", lambda self: False)
    monkeypatch.setattr(Transfer, "finish", broken)
    with pytest.warns(UserWarning, match="capture failed"):
        records = _train(tmp_path / "broken", steps=3)
    steps = [r for r in records if r["type"] == "step"]
    assert [r["step"] for r in steps] == [0, 1, 2]
    assert all(r["params"] is None and r["losses"] == [] and r["events"] for r in steps)
    assert any(r["type"] == "meta" and r["key"] == "capture_error" for r in records)
