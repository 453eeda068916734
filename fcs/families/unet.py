"""Stable Diffusion 1.x/2.x and pixel-space UNets as a :class:`fcs.denoiser.Denoiser`.

Variance-preserving: α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) with ᾱ_t = ``scheduler.alphas_cumprod[t]``; one
index t serves both the UNet call and (α_t, σ_t); ε- or v-prediction.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fcs.denoiser import EMPTY, Cond, Denoiser
from fcs.families.group_norm import unet_levels, vae_levels
from fcs.schedule import Schedule, check_prediction, vp_coefficients

log = logging.getLogger(__name__)


class UNetDenoiser(Denoiser):
    """Wraps a diffusers UNet (latent SD or pixel-space) and its scheduler's noise schedule.

    Args:
        unet: ``UNet2DConditionModel`` (with ``vae``) or ``UNet2DModel`` (pixel-space, no VAE/text).
        scheduler: any diffusers scheduler; only its ``alphas_cumprod``, ``prediction_type`` and
            step layout are used (sampling is DDIM).
        vae: ``AutoencoderKL`` or None for pixel-space models.
        text_encoder, tokenizer: CLIP text model and tokenizer for latent models.
        guidance_scale: classifier-free guidance; 1 disables it (one UNet pass per forward).
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler: Any,
        vae: torch.nn.Module | None = None,
        text_encoder: torch.nn.Module | None = None,
        tokenizer: Any = None,
        guidance_scale: float = 1.0,
        name: str = "model",
    ) -> None:
        from diffusers import DDIMScheduler

        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler = DDIMScheduler.from_config(scheduler.config)
        self.guidance_scale = float(guidance_scale)
        self.name = name
        self.prediction_type = self.scheduler.config.prediction_type
        if check_prediction(self.prediction_type) == "flow":
            raise ValueError("a DDIM scheduler has no flow prediction; flow models are their own family")
        for module in (unet, vae, text_encoder):
            if module is not None:
                module.requires_grad_(False).eval()
        if vae is not None and unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"the UNet takes {unet.config.in_channels} input channels but the VAE makes "
                f"{vae.config.latent_channels}: an inpainting-finetuned UNet? fcs needs none; load the base model")
        if getattr(unet.config, "addition_embed_type", None):
            raise ValueError(f"UNets with addition_embed_type={unet.config.addition_embed_type!r} (SDXL-style) "
                             "are not supported yet; use an SD 1.x/2.x-style checkpoint")
        self._alphas = self.scheduler.alphas_cumprod.to(torch.float64)
        self._uncond: Cond | None = None
        self._channels_last = False

    @classmethod
    def from_pipe(cls, pipe: Any, guidance_scale: float = 1.0, name: str = "model") -> UNetDenoiser:
        """The components of a loaded diffusers pipeline (shared, not copied)."""
        return cls(unet=pipe.unet, scheduler=pipe.scheduler, vae=getattr(pipe, "vae", None),
                   text_encoder=getattr(pipe, "text_encoder", None), tokenizer=getattr(pipe, "tokenizer", None),
                   guidance_scale=guidance_scale, name=name)

    # -- properties -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def scale_factor(self) -> int:
        """Pixels per model-space cell along each side (8 for SD, 1 for pixel models)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def channels(self) -> int:
        return self.unet.config.in_channels

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> UNetDenoiser:
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.unet, self.vae, self.text_encoder):
            if module is not None:
                module.to(**kwargs)
        self._uncond = None
        return self

    def accelerate(self, compile: bool = False, channels_last: bool = False, backend: str = "inductor") -> UNetDenoiser:
        """Speed switches for GPU serving, off by default: channels-last UNet weights and
        ``torch.compile`` of the UNet (static shapes; pad short batches to reuse the graph). Outputs
        match the plain model up to float round-off (``tests/test_accelerate.py``); the exact JVP
        always runs the uncompiled UNet, in the default memory format (forward-mode group norm
        rejects channels-last activations), so with channels_last each JVP converts the weights
        there and back (two weight copies per call; the finite difference needs none)."""
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self._channels_last = True
        if compile:
            self.unet = torch.compile(self.unet, backend=backend, dynamic=False)
        return self

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE factor times the UNet's downsampling."""
        return self.scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def norm_levels(self) -> list[tuple[int, int]]:
        """The UNet's group norms over VAE cells, and the VAE's own."""
        levels = unet_levels(self.unet.config, self.scale_factor)
        return levels + (vae_levels(self.vae.config) if self.vae is not None else [])

    def coefficients(self, t: int) -> tuple[float, float]:
        """(α_t, σ_t) = (√ᾱ_t, √(1 − ᾱ_t)) from the fp64 schedule."""
        return vp_coefficients(self._alphas, t)

    def schedule(self, steps: int, shape: Sequence[int] | None = None) -> Schedule:
        """The DDIM timesteps for ``steps`` outer steps (the scheduler's spacing), noisiest first."""
        self.scheduler.set_timesteps(steps)
        return Schedule.variance_preserving(self._alphas, [int(t) for t in self.scheduler.timesteps])

    # -- text -------------------------------------------------------------------------------
    def encode_prompt(self, prompts: list[str]) -> Cond:
        """Text embeddings (B, L, D) as ``cond["encoder_hidden_states"]``; empty for pixel models."""
        if self.text_encoder is None:
            return EMPTY
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        with torch.no_grad():
            return Cond({"encoder_hidden_states": self.text_encoder(ids)[0]})

    def _unconditional(self, batch: int) -> Cond:
        if self._uncond is None:
            self._uncond = self.encode_prompt([""])
        return self._uncond.repeat(batch)

    # -- the denoiser -----------------------------------------------------------------------
    def model_output(self, x: Tensor, t: int, cond: Cond) -> Tensor:
        """One UNet forward (two batched ones under classifier-free guidance) at training index t."""
        x = x.to(self.dtype)
        timestep = torch.tensor(int(t), device=x.device)
        if not cond.tensors:
            return self.unet(x, timestep).sample
        cond = cond.to(self.dtype)
        if self.guidance_scale == 1.0:
            return self.unet(x, timestep, **cond.tensors).sample
        uncond = self._unconditional(x.shape[0]).to(self.dtype)
        both = self.unet(torch.cat([x, x]), timestep, **uncond.cat(cond).tensors).sample
        out_u, out_c = both.chunk(2)
        return out_u + self.guidance_scale * (out_c - out_u)

    def jvp(self, x: Tensor, tangent: Tensor, t: int, cond: Cond | None = None) -> Tensor:
        """Exact J·tangent with J = ∂x̂0/∂x_t by forward-mode AD (one forward-mode UNet pass).

        Forward-mode AD has no rule for the fused SDPA kernels (flash, memory-efficient), so this call
        alone runs attention by :func:`fcs.attention_jvp.jvp_attention` (blockwise: no N×N matrix); the
        model's attention processors stay as they are and every other forward pass keeps fused attention.
        """
        from fcs.attention_jvp import jvp_attention

        dtype = self.dtype
        view = copy.copy(self)
        view.unet = getattr(self.unet, "_orig_mod", self.unet)  # forward-mode AD runs the eager module

        def tweedie(x_in: Tensor) -> Tensor:
            return view.predict(x_in, t, cond)[1]

        # contiguous: forward-mode group_norm fails on strided primals (e.g. x_t built from VAE latents)
        if self._channels_last:
            view.unet.to(memory_format=torch.contiguous_format)
        try:
            with jvp_attention(self.jvp_attention, view.unet):
                _, jv = torch.func.jvp(tweedie, (x.to(dtype).contiguous(),), (tangent.to(dtype).contiguous(),))
        finally:
            if self._channels_last:
                view.unet.to(memory_format=torch.channels_last)
        return jv.float()

    # -- VAE --------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """Model-space representation of images (B, 3, H, W) in [0, 1]: VAE posterior mean × scaling
        factor for latent models, 2·x − 1 for pixel models."""
        x = images.to(self.device, torch.float32) * 2 - 1
        if self.vae is None:
            # a greyscale pixel model takes RGB input as its luminance mean
            return x.mean(1, keepdim=True) if self.channels == 1 and x.shape[1] == 3 else x
        with torch.no_grad():
            mean = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean
        return mean.float() * self.vae.config.scaling_factor

    def decode(self, x0: Tensor) -> Tensor:
        """Images (B, 3, H, W), nominally in [0, 1], from model-space x0; differentiable through the
        decoder only. Not clamped, so constraint gradients survive saturated pixels."""
        if self.vae is None:
            return (x0.float() + 1) / 2
        z = x0 / self.vae.config.scaling_factor
        return (self.vae.decode(z.to(self.vae.dtype)).sample.float() + 1) / 2
