"""The denoiser contract every model family and analytic prior implements.

A denoiser maps x_t to (ε̂, x̂0) under x_t = α_t·x0 + σ_t·ε (:mod:`fcs.schedule`), owns its schedule
and its way into and out of model space (VAE or identity), and encodes prompts into a :class:`Cond`.
Samplers see only this contract: adding a model family is one subclass and its tests.

Paper notation (Graikos, Jojic & Samaras, arXiv 2410.18804):
    x      x_t, the noisy sample in model space (latents, or pixels in [-1, 1])
    x0     x̂0(x_t), Tweedie's estimate E[x0 | x_t]
    J      ∂x̂0/∂x_t; for an exact denoiser J = (α/σ²)·Cov[x0 | x_t] (symmetric PSD)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fcs.schedule import Schedule, to_prediction


@dataclass(frozen=True)
class Cond:
    """A batch of conditioning tensors, batch-first (text embeddings, pooled embeddings, time ids...).

    An empty Cond (no tensors) stands for "unconditional" and fits any batch.
    """

    tensors: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 0

    def __getitem__(self, name: str) -> Tensor:
        return self.tensors[name]

    def select(self, idx: Tensor | Sequence[int]) -> Cond:
        """The rows ``idx`` of every tensor."""
        if not self.tensors:
            return self
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Cond({k: v[idx.to(v.device)] for k, v in self.tensors.items()})

    def repeat(self, n: int) -> Cond:
        """A one-item Cond repeated n times (n items that share a prompt)."""
        if not self.tensors:
            return self
        if len(self) != 1:
            raise ValueError(f"repeat needs a one-item Cond, this one has {len(self)} items")
        return Cond({k: v.expand(n, *v.shape[1:]) for k, v in self.tensors.items()})

    def cat(self, other: Cond) -> Cond:
        """This batch followed by ``other``'s (same tensor names)."""
        if not self.tensors:
            return other
        return Cond({k: torch.cat([v, other.tensors[k].to(v)]) for k, v in self.tensors.items()})

    def to(self, dtype: torch.dtype) -> Cond:
        return Cond({k: v.to(dtype) if v.is_floating_point() else v for k, v in self.tensors.items()})


EMPTY = Cond()


class Denoiser:
    """The contract. Subclasses set ``prediction_type`` (:data:`fcs.schedule.PREDICTIONS`) and
    implement ``model_output``, ``coefficients``, ``schedule``, and ``encode``/``decode`` when the
    model space is not pixels; the rest has working defaults.
    """

    name: str = "denoiser"
    prediction_type: str = "epsilon"
    guidance_scale: float = 1.0
    jvp_attention: str = "blockwise"  # how :meth:`jvp` runs attention (fcs.attention_jvp.ATTENTION_JVPS)

    # -- the model ---------------------------------------------------------------------------
    def model_output(self, x: Tensor, t, cond: Cond) -> Tensor:
        """The network's raw output at x_t (B, C, h, w) in its ``prediction_type``."""
        raise NotImplementedError

    def coefficients(self, t) -> tuple[float, float]:
        """(α_t, σ_t) of timestep ``t`` as Python floats."""
        raise NotImplementedError

    def schedule(self, steps: int, shape: Sequence[int] | None = None) -> Schedule:
        """The default sampling schedule with ``steps`` outer steps, noisiest first, for samples of
        ``shape`` = (C, h, w) (the samplers always pass it; FLUX's shift depends on the size, the other
        families ignore it)."""
        raise NotImplementedError

    def predict(self, x: Tensor, t, cond: Cond | None = None) -> tuple[Tensor, Tensor]:
        """One model forward: (ε̂, x̂0), both fp32 with the shape of ``x`` (B, C, h, w)."""
        alpha, sigma = self.coefficients(t)
        out = self.model_output(x, t, EMPTY if cond is None else cond).float()
        return to_prediction(out, x.float(), alpha, sigma, self.prediction_type)

    def jvp(self, x: Tensor, tangent: Tensor, t, cond: Cond | None = None) -> Tensor:
        """Exact J·tangent with J = ∂x̂0/∂x_t by forward-mode AD (one forward-mode model pass), attention
        as :attr:`jvp_attention` says (:func:`fcs.attention_jvp.jvp_attention`)."""
        from fcs.attention_jvp import jvp_attention

        with jvp_attention(self.jvp_attention):
            _, jv = torch.func.jvp(lambda x_in: self.predict(x_in, t, cond)[1], (x.float(),), (tangent.float(),))
        return jv.float()

    # -- model space -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def channels(self) -> int:
        """Channels of x_t."""
        raise NotImplementedError

    @property
    def scale_factor(self) -> int:
        """Pixels per model-space cell along each side (8 for SD, 1 for pixel models)."""
        return 1

    @property
    def is_latent(self) -> bool:
        return self.scale_factor > 1

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this."""
        return self.scale_factor

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of x_t for an image of height × width pixels (multiples of ``size_multiple``)."""
        return self.channels, height // self.scale_factor, width // self.scale_factor

    def min_side(self) -> int:
        """The smallest image side (pixels) this model takes. Images are padded up to a multiple of
        ``size_multiple``; every group norm must then see more than one value per group for one image
        (:meth:`norm_levels`), which small UNets miss at their coarsest level on the smallest grid."""
        multiple = self.size_multiple
        if all(per_group * (multiple // pixels) ** 2 > 1 for pixels, per_group in self.norm_levels()):
            return 1  # any side, padded to one grid cell
        return multiple + 1  # two cells: every level then has at least 2 × 2 values per channel

    def norm_levels(self) -> list[tuple[int, int]]:
        """(pixels per cell along a side, fewest channels per group) at each resolution where the model
        runs group norms (:mod:`fcs.families.group_norm`); none by default."""
        return []

    def encode(self, images: Tensor) -> Tensor:
        """Model-space x0 of images (B, 3, H, W) in [0, 1]; pixel models: 2·x − 1 (float64 stays float64)."""
        images = images.to(self.device)
        return (images if images.dtype == torch.float64 else images.float()) * 2 - 1

    def decode(self, x0: Tensor) -> Tensor:
        """Images (B, 3, H, W), nominally in [0, 1], from model-space x0; differentiable, not clamped."""
        return ((x0 if x0.dtype == torch.float64 else x0.float()) + 1) / 2

    def encode_prompt(self, prompts: Sequence[str]) -> Cond:
        """Conditioning for a batch of prompts; unconditional models return the empty Cond."""
        return EMPTY

    # -- views -------------------------------------------------------------------------------
    def accelerate(self, compile: bool = False, channels_last: bool = False, backend: str = "inductor") -> Denoiser:
        """GPU speed switches (``torch.compile`` of the network, channels-last weights); a family that
        has none ignores them (analytic denoisers)."""
        return self

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Denoiser:
        return self

    def with_guidance(self, guidance_scale: float) -> Denoiser:
        """A view sharing the same modules with another classifier-free guidance scale."""
        if guidance_scale == self.guidance_scale:
            return self
        view = copy.copy(self)
        view.guidance_scale = float(guidance_scale)
        return view
