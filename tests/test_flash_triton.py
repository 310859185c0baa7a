"""The Triton kernel, run by Triton's interpreter on the CPU (skipped when triton is not installed).

On a machine with a CUDA GPU the same tests run the compiled kernel.
"""

import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (it ships with PyTorch's CUDA wheels)", allow_module_level=True)
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must be set before triton compiles anything

from attnbook.flash_triton import triton_flash_attention  # noqa: E402
from attnbook.masks import causal_mask  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L,S", [(64, 64), (40, 40), (50, 70), (70, 33)])
def test_equals_pytorch_attention(causal, L, S):
    g = torch.Generator().manual_seed(L + S)
    q = torch.randn(1, 2, L, 16, generator=g).to(DEVICE)
    k, v = torch.randn(1, 2, S, 16, generator=g).to(DEVICE), torch.randn(1, 2, S, 16, generator=g).to(DEVICE)
    out = triton_flash_attention(q, k, v, is_causal=causal, block_q=16, block_k=32)
    tol = 2e-2 if DEVICE == "cuda" else 1e-5  # on a GPU tl.dot uses TF32 for float32 inputs
    mask = causal_mask(L, S, device=DEVICE) if causal else None  # bottom-right, as the kernel
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if mask is not None:
        ref = ref.masked_fill(~mask.any(-1)[:, None], 0.0)  # rows with no key: zero (PyTorch: NaN or 0)
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def test_bad_shapes_and_blocks_raise():
    q = torch.randn(1, 1, 8, 12)
    with pytest.raises(ValueError, match="power of two >= 16, got 12"):
        triton_flash_attention(q, q, q)
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="block_q to be a power of two"):
        triton_flash_attention(q, q, q, block_q=24)
    with pytest.raises(ValueError, match="expected q: "):
        triton_flash_attention(q, torch.randn(1, 1, 8, 32), torch.randn(1, 1, 8, 32))
