"""Forward-mode attention that never holds the N×N matrix: the exact J·e at fused-attention memory.

PyTorch has no forward-mode rule for its fused SDPA kernels, so an exact J·e through attention used to
run the math kernel, which holds the probabilities P (N × N per head) and their tangent. Here the output
O = softmax(S)·V, S = s·Q·Kᵀ (+ mask), and its tangent

    dO = (P ⊙ dS)·V − rowsum(P ⊙ dS) ⊙ O + P·dV,    dS = s·(dQ·Kᵀ + Q·dKᵀ)

are computed one block of :data:`QUERY_BLOCK` queries at a time, so at most a block's rows of P and dS
are alive (linear in N, as a fused kernel's memory is). :func:`jvp_attention` routes every
``scaled_dot_product_attention`` call inside it (every family's own attention processors call it) to
this path, or to the math kernel for comparison (:data:`ATTENTION_JVPS`). With attention blockwise the
J·e's next largest tensors are forward-mode AD's own: its decomposed group norm (several float32 copies
of the input) and the widened hidden states of each feed-forward; the blockwise path gives group norm a
closed-form tangent and runs feed-forwards in token chunks, both exact.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

ATTENTION_JVPS = ("blockwise", "math")  # how a J·e runs attention; "math": the N×N kernel it replaces
QUERY_BLOCK = 128  # queries per block: the rows of P and dS alive at once (a fused kernel's tile height)


def check_attention_jvp(kind: str) -> str:
    if kind not in ATTENTION_JVPS:
        raise ValueError(f"jvp_attention must be one of {ATTENTION_JVPS}, got {kind!r}")
    return kind


def _probabilities(q: Tensor, k: Tensor, mask: Tensor | None, scale: float, rows: slice) -> Tensor:
    """softmax(s·Q[rows]·Kᵀ + the mask's rows) in the inputs' dtype (softmax accumulates in float32),
    built in place: one block-sized tensor at a time."""
    s = (q[..., rows, :] @ k.transpose(-2, -1)).mul_(scale)
    if mask is not None:
        m = mask[..., rows, :] if mask.shape[-2] == q.shape[-2] else mask  # a mask may broadcast over queries
        s = s.masked_fill_(~m, -math.inf) if m.dtype == torch.bool else s.add_(m.to(s.dtype))
    return torch.softmax(s, -1)


def _blocks(length: int) -> Iterator[slice]:
    return (slice(i, min(i + QUERY_BLOCK, length)) for i in range(0, length, QUERY_BLOCK))


class BlockwiseAttention(torch.autograd.Function):
    """softmax(s·Q·Kᵀ + mask)·V by query blocks, with its forward-mode (JVP) rule; no backward."""

    @staticmethod
    def forward(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
        return torch.cat([_probabilities(q, k, mask, scale, rows) @ v for rows in _blocks(q.shape[-2])], dim=-2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        q, k, v, mask, scale = inputs
        ctx.save_for_forward(q, k, v, output)
        ctx.mask, ctx.scale = mask, scale

    @staticmethod
    def jvp(ctx, dq: Tensor | None, dk: Tensor | None, dv: Tensor | None, *_: object) -> Tensor:
        q, k, v, out = ctx.saved_tensors
        # a tangent may arrive in another dtype than its primal (an fp32 norm's tangent in an fp16 model)
        dq, dk, dv = (None if d is None else d.to(p.dtype) for d, p in ((dq, q), (dk, k), (dv, v)))
        pieces = []
        for rows in _blocks(q.shape[-2]):
            p = _probabilities(q, k, ctx.mask, ctx.scale, rows)
            ds = dq[..., rows, :] @ k.transpose(-2, -1) if dq is not None else torch.zeros_like(p)
            if dk is not None:
                ds.add_(q[..., rows, :] @ dk.transpose(-2, -1))
            pds = ds.mul_(p).mul_(ctx.scale)  # P ⊙ dS, in place of dS
            piece = pds @ v - pds.sum(-1, keepdim=True, dtype=torch.float32).to(out.dtype) * out[..., rows, :]
            if dv is not None:
                piece = piece + p @ dv
            pieces.append(piece)
        return torch.cat(pieces, dim=-2)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        raise NotImplementedError("BlockwiseAttention is for forward-mode J·e only (fcs.attention_jvp)")


class GroupNormTangent(torch.autograd.Function):
    """``group_norm`` with a closed-form JVP: dy = γ·(dx − mean(dx) − x̂·mean(x̂·dx))/σ per group (+ x̂·dγ + dβ).
    Forward-mode AD otherwise runs its decomposition, several float32 copies of the input at once."""

    @staticmethod
    def forward(x: Tensor, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
        return F.group_norm(x, groups, weight, bias, eps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, groups, weight, bias, eps = inputs
        ctx.save_for_forward(x, weight)
        ctx.groups, ctx.eps = groups, eps

    @staticmethod
    def jvp(ctx, dx: Tensor | None, _groups, dweight: Tensor | None, dbias: Tensor | None, _eps) -> Tensor:
        x, weight = ctx.saved_tensors
        grouped = x.view(x.shape[0], ctx.groups, -1)
        var, mean = torch.var_mean(grouped.float(), dim=-1, unbiased=False, keepdim=True)
        rstd = torch.rsqrt(var + ctx.eps)
        normed = ((grouped - mean.to(x.dtype)) * rstd.to(x.dtype))
        channel = (1, -1) + (1,) * (x.dim() - 2)
        out = torch.zeros_like(x)
        if dx is not None:
            d = dx.to(x.dtype).reshape(grouped.shape)
            d_mean = d.mean(-1, keepdim=True, dtype=torch.float32)
            dot = (normed * d).mean(-1, keepdim=True, dtype=torch.float32)
            tangent = (d - d_mean.to(x.dtype) - normed * dot.to(x.dtype)) * rstd.to(x.dtype)
            out = tangent.view_as(x) * (weight.view(channel) if weight is not None else 1)
        if dweight is not None:
            out = out + normed.view_as(x) * dweight.to(x.dtype).view(channel)
        if dbias is not None:
            out = out + dbias.to(x.dtype).view(channel)
        return out

    @staticmethod
    def backward(ctx, *grads: Tensor):
        raise NotImplementedError("GroupNormTangent is for forward-mode J·e only (fcs.attention_jvp)")


class _Blockwise(TorchFunctionMode):
    """Every ``scaled_dot_product_attention`` call as :class:`BlockwiseAttention` (what it cannot take:
    dropout, causal masks, grouped-query attention, goes to the math kernel), every ``group_norm`` as
    :class:`GroupNormTangent`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.group_norm:
            call = dict(zip(("input", "num_groups", "weight", "bias", "eps"), args, strict=False)) | kwargs
            return GroupNormTangent.apply(call["input"], call["num_groups"], call.get("weight"), call.get("bias"),
                                          call.get("eps", 1e-5))
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        call = dict(zip(names, args, strict=False)) | kwargs
        if call.get("dropout_p", 0.0) or call.get("is_causal", False) or call.get("enable_gqa", False):
            with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
                return func(*args, **kwargs)
        q, k, v = call["query"], call["key"], call["value"]
        scale = call.get("scale") or 1 / math.sqrt(q.shape[-1])
        return BlockwiseAttention.apply(q, k, v, call.get("attn_mask"), float(scale))


FEED_FORWARD_TOKENS = 1024  # tokens per chunk of a feed-forward in a blockwise J·e


@contextlib.contextmanager
def _chunked_feed_forwards(model: torch.nn.Module | None) -> Iterator[None]:
    """Each diffusers ``FeedForward`` of ``model`` run :data:`FEED_FORWARD_TOKENS` tokens at a time (it maps
    every token alone, so the output is the same): forward mode holds its widened hidden states and
    their tangents, the J·e's largest tensors once attention is blockwise."""
    from diffusers.models.attention import FeedForward

    wrapped = [m for m in (model.modules() if model is not None else ()) if isinstance(m, FeedForward)]

    def chunked(module: FeedForward):
        forward = module.forward

        def run(hidden_states: Tensor, *args, **kwargs) -> Tensor:
            if hidden_states.dim() != 3 or hidden_states.shape[1] <= FEED_FORWARD_TOKENS:
                return forward(hidden_states, *args, **kwargs)
            return torch.cat([forward(h, *args, **kwargs) for h in hidden_states.split(FEED_FORWARD_TOKENS, 1)], 1)
        return run

    saved = [m.__dict__.get("forward") for m in wrapped]  # an instance-level forward (e.g. an offload hook)
    for m in wrapped:
        m.forward = chunked(m)
    try:
        yield
    finally:
        for m, forward in zip(wrapped, saved, strict=True):
            if forward is None:
                del m.forward  # back to the class's
            else:
                m.forward = forward


@contextlib.contextmanager
def jvp_attention(kind: str = "blockwise", model: torch.nn.Module | None = None) -> Iterator[None]:
    """Attention as a J·e through it runs: ``blockwise`` (:class:`BlockwiseAttention`, group norms by
    :class:`GroupNormTangent`, ``model``'s feed-forwards in token chunks) or ``math`` (PyTorch's math
    SDPA kernel and forward-mode AD's own rules: the path it replaces)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if check_attention_jvp(kind) == "math":
        with sdpa_kernel([SDPBackend.MATH]):
            yield
        return
    with _Blockwise(), _chunked_feed_forwards(model):
        yield
