"""The Triton digest kernel (`parity.capture.fused_triton`) equals the sums' definitions bit for bit.

On the CPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, in a subprocess, because the
variable is read when the kernel is first compiled); on a CUDA machine it runs compiled, through the
same `SumPlan` the recorder uses. Both are skipped where Triton (or CUDA) is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

CHECK = textwrap.dedent("""
    import torch
    from parity.capture import fused_triton
    MASK = (1 << 64) - 1

    def words(t):
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return sum(int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)) & MASK

    def elements(t):
        w = t.element_size()
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return sum(int.from_bytes(data[i:i + w], "little", signed=w > 1) for i in range(0, len(data), w)) & MASK

    g = torch.Generator().manual_seed(0)
    def rand(dtype, n):
        width = torch.empty((), dtype=dtype).element_size()
        return torch.randint(0, 256, (n, width), dtype=torch.uint8, generator=g).view(dtype).reshape(n)

    # Sizes around the block length, every element width; all whole 8-byte words (the kernel's domain).
    tensors = [rand(torch.bfloat16, 4), rand(torch.float32, 2 * 4096 + 2), rand(torch.uint8, 8 * 4097),
               rand(torch.int16, 4096 * 4 * 2), rand(torch.float64, 3), rand(torch.int32, 6), rand(torch.bool, 16)]
    fused_triton.BLOCK_WORDS = 4096
    sums = fused_triton.TritonSums(tensors)
    w, e = sums.run(True)
    assert [v & MASK for v in w.tolist()] == [words(t) for t in tensors], "word sums"
    assert [v & MASK for v in e.tolist()] == [elements(t) for t in tensors], "element sums"
    w_only, none = sums.run(False)
    assert none is None and w_only.tolist() == w.tolist()
    for k, t in enumerate(tensors):  # a single bit flip anywhere changes both sums
        bit = (k * 7919) % (t.numel() * t.element_size() * 8)
        t.view(torch.uint8).reshape(-1)[bit // 8] ^= 1 << (bit % 8)
        w2, e2 = sums.run(True)
        assert w2[k] != w[k] and e2[k] != e[k], (k, bit)
        t.view(torch.uint8).reshape(-1)[bit // 8] ^= 1 << (bit % 8)
    print("ok")
""")


def test_triton_kernel_in_the_interpreter_matches_the_definitions() -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sum_plan_on_cuda_is_the_same_with_and_without_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    from parity.capture import fused

    g = torch.Generator().manual_seed(1)
    tensors = [torch.randn(n, generator=g).to(dtype).cuda() for n, dtype in
               [(1 << 20, torch.bfloat16), (3, torch.float32), (1000, torch.bfloat16), (1 << 18, torch.float32)]]
    tensors.append(torch.randn(7, generator=g).half().cuda())  # 14 bytes: left to the torch plan
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv(fused.ENV_TRITON, flag)
        out = []
        for ints, blocks in fused.SumPlan(tensors).run((fused.WORDS, fused.ELEMENTS)):
            ints = list(ints)
            for positions, vector in blocks:
                for i, v in zip(positions, vector.tolist()):
                    ints[i] = v
            out.append(ints)
        results.append(out)
    assert results[0] == results[1]
