"""The blockwise J·e equals the math-attention J·e it replaces (fp32, 1e-5 relative): on attention and
group norm alone, through every tiny family's Denoiser.jvp, and on one full-size SD-1.5 transformer block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import fcs.attention_jvp as attention_jvp
from fcs.attention_jvp import jvp_attention

REL = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture
def small_blocks(monkeypatch):
    """16-query blocks and 16-token feed-forward chunks, so that tiny inputs span several and a ragged last one."""
    monkeypatch.setattr(attention_jvp, "QUERY_BLOCK", 16)
    monkeypatch.setattr(attention_jvp, "FEED_FORWARD_TOKENS", 16)


def _math_and_blockwise(fn, primals, tangents, model=None):
    with sdpa_kernel([SDPBackend.MATH]):
        want = torch.func.jvp(fn, primals, tangents)
    calls = []
    original = attention_jvp.BlockwiseAttention.jvp

    def counted(ctx, *args):
        calls.append(1)
        return original(ctx, *args)

    attention_jvp.BlockwiseAttention.jvp = staticmethod(counted)
    try:
        with jvp_attention("blockwise", model):
            got = torch.func.jvp(fn, primals, tangents)
    finally:
        attention_jvp.BlockwiseAttention.jvp = staticmethod(original)
    return want, got, len(calls)


MASKS = {"none": None, "additive": lambda b, n, s: torch.randn(b, 1, n, s),
         "bool, broadcast over queries": lambda b, n, s: torch.rand(b, 1, 1, s) > 0.3}


@pytest.mark.parametrize("mask", MASKS, ids=list(MASKS))
def test_attention_tangent_equals_the_math_kernels(small_blocks, mask):
    gen = torch.Generator().manual_seed(0)
    b, h, queries, s, e = 2, 3, 45, 21, 8
    q, k, v = (torch.randn(b, h, n, e, generator=gen) for n in (queries, s, s))
    dq, dk, dv = (torch.randn(t.shape, generator=gen) for t in (q, k, v))
    m = MASKS[mask](b, queries, s) if MASKS[mask] else None
    (out, tan), (out_b, tan_b), calls = _math_and_blockwise(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3), (q, k, v), (dq, dk, dv))
    assert calls == 1
    assert _rel(out_b, out) < REL and _rel(tan_b, tan) < REL
    # a tangent in the queries only (cross-attention to a fixed prompt)
    (_, tan_q), (_, tan_qb), _ = _math_and_blockwise(lambda q: F.scaled_dot_product_attention(q, k, v), (q,), (dq,))
    assert _rel(tan_qb, tan_q) < REL


def test_group_norm_tangent_equals_forward_mode_ads():
    gen = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(2, 12, 5, 7, generator=gen), torch.randn(12, generator=gen), torch.randn(12, generator=gen)
    tangents = tuple(torch.randn(t.shape, generator=gen) for t in (x, w, b))

    def norm(x, w, b):
        return F.group_norm(x, 4, w, b, 1e-5)

    out, tan = torch.func.jvp(norm, (x, w, b), tangents)
    with jvp_attention("blockwise"):
        out_b, tan_b = torch.func.jvp(norm, (x, w, b), tangents)
        _, tan_x = torch.func.jvp(lambda x: norm(x, w, b), (x,), tangents[:1])
    assert _rel(out_b, out) < REL and _rel(tan_b, tan) < REL
    assert _rel(tan_x, torch.func.jvp(lambda x: norm(x, w, b), (x,), tangents[:1])[1]) < REL


def test_unsupported_calls_run_the_math_kernel():
    q = torch.randn(1, 2, 10, 4)
    with jvp_attention("blockwise"):
        causal = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    torch.testing.assert_close(causal, F.scaled_dot_product_attention(q, q, q, is_causal=True))
    with pytest.raises(ValueError, match="jvp_attention must be one of"):
        with jvp_attention("flash"):
            pass


@pytest.fixture(scope="module")
def tiny_families(tmp_path_factory):
    from fcs import load_denoiser
    from fcs.loading import BUILT

    root = tmp_path_factory.mktemp("families")
    return {name: load_denoiser(BUILT[name](root / name), device="cpu", dtype="float32")
            for name in ("tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux")}


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_every_family_jvp_equals_the_math_attention_jvp(tiny_families, small_blocks, name):
    den = tiny_families[name]
    shape = den.latent_shape(64, 64)
    gen = torch.Generator().manual_seed(1)
    x, e = torch.randn(2, *shape, generator=gen), torch.randn(2, *shape, generator=gen)
    cond = den.encode_prompt(["a red cube", "a blue sphere"])
    t = den.schedule(10, shape).timesteps[4]
    try:
        den.jvp_attention = "math"
        want = den.jvp(x, e, t, cond)
    finally:
        den.jvp_attention = "blockwise"
    assert _rel(den.jvp(x, e, t, cond), want) < REL


def test_full_size_sd15_attention_block_at_64_latents():
    """SD-1.5's first transformer block (320 channels, 8 heads, 768-d prompt) on 64² latents: 4,096
    tokens, 32 query blocks and 4 feed-forward chunks of the default sizes."""
    from diffusers.models.attention import BasicTransformerBlock

    torch.manual_seed(0)
    block = BasicTransformerBlock(320, 8, 40, cross_attention_dim=768).eval()
    gen = torch.Generator().manual_seed(2)
    x, e = torch.randn(1, 64 * 64, 320, generator=gen), torch.randn(1, 64 * 64, 320, generator=gen)
    prompt = torch.randn(1, 77, 768, generator=gen)
    with torch.no_grad():
        (_, want), (_, got), calls = _math_and_blockwise(
            lambda h: block(h, encoder_hidden_states=prompt), (x,), (e,), model=block)
    assert calls == 2  # self- and cross-attention
    assert _rel(got, want) < REL
    assert "forward" not in block.ff.__dict__  # the feed-forward is its class's again
