"""Stable Diffusion XL (``StableDiffusionXLPipeline``) as a :class:`fcs.denoiser.Denoiser`.

The schedule, sampling and exact JVP are SD 1.x's (:class:`fcs.families.unet.UNetDenoiser`:
variance-preserving, ε-prediction, DDIM at the scheduler's timesteps); what SDXL adds is wired
through the loaded pipeline's own code, as ``StableDiffusionXLPipeline.__call__`` wires it:

- text: ``pipe.encode_prompt`` (two CLIP encoders, penultimate hidden states concatenated, the
  second encoder's pooled projection as ``text_embeds``), once per distinct prompt (cached on the
  denoiser); the classifier-free-guidance negative is the pipeline's (zeros when the checkpoint
  sets ``force_zeros_for_empty_prompt``, as SDXL base does);
- micro-conditioning: ``pipe._get_add_time_ids`` with original size = target size = the image
  size of x_t (its latent shape × 8) and crop (0, 0), the pipeline's defaults, per call; the
  ``original_size``, ``crops_coords_top_left`` and ``target_size`` attributes override them;
- VAE: ``force_upcast`` keeps an fp16 VAE in fp32 (SDXL's VAE overflows in fp16); latents are
  normalised by ``latents_mean``/``latents_std`` when the VAE config has them, else by
  ``scaling_factor`` alone.

The text encoders are only needed until every prompt is encoded: ``free_text_encoders(prompts)``
encodes those prompts (and the unconditional one), then drops both encoders (about 0.8 B parameters
in SDXL); the cached prompts keep working, a new prompt then fails with a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fcs.denoiser import Cond
from fcs.families.unet import UNetDenoiser
from fcs.schedule import check_prediction

log = logging.getLogger(__name__)


class SDXLDenoiser(UNetDenoiser):
    """Wraps a loaded ``StableDiffusionXLPipeline`` (its modules shared, not copied).

    Args:
        pipe: the pipeline; its ``unet``, ``vae``, text encoders, tokenizers and scheduler config are used.
        guidance_scale: classifier-free guidance; 1 disables it (one UNet pass per forward).
    """

    def __init__(self, pipe: Any, guidance_scale: float = 1.0, name: str = "model") -> None:
        from diffusers import DDIMScheduler

        self.pipe = pipe
        self.unet, self.vae = pipe.unet, pipe.vae
        self.text_encoder, self.tokenizer = pipe.text_encoder, pipe.tokenizer
        self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.guidance_scale = float(guidance_scale)
        self.name = name
        self.prediction_type = check_prediction(self.scheduler.config.prediction_type)
        if self.prediction_type == "flow":
            raise ValueError("a DDIM scheduler has no flow prediction; flow models are their own family")
        if getattr(self.unet.config, "addition_embed_type", None) != "text_time":
            raise ValueError(f"an SDXL UNet has addition_embed_type='text_time', this one has "
                             f"{self.unet.config.addition_embed_type!r}")
        if self.unet.config.in_channels != self.vae.config.latent_channels:
            raise ValueError(
                f"the UNet takes {self.unet.config.in_channels} input channels but the VAE makes "
                f"{self.vae.config.latent_channels}: an inpainting-finetuned UNet? fcs needs none; load the base model")
        for module in (self.unet, self.vae, pipe.text_encoder, pipe.text_encoder_2):
            if module is not None:
                module.requires_grad_(False).eval()
        self._alphas = self.scheduler.alphas_cumprod.to(torch.float64)
        self._uncond = None
        self._channels_last = False
        self._prompts: dict[str, tuple[Tensor, Tensor]] = {}  # prompt -> (prompt_embeds, pooled) rows, fp32
        self._negative: dict[str, tuple[Tensor, Tensor]] = {}  # "" -> the guidance negative (shared by views)
        self._time_ids: dict[tuple, Tensor] = {}
        self.original_size: tuple[int, int] | None = None  # None: the image size of x_t (the pipeline's default)
        self.crops_coords_top_left: tuple[int, int] = (0, 0)
        self.target_size: tuple[int, int] | None = None
        self._upcast_vae()

    @classmethod
    def from_pipe(cls, pipe: Any, guidance_scale: float = 1.0, name: str = "model") -> SDXLDenoiser:
        return cls(pipe, guidance_scale=guidance_scale, name=name)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> SDXLDenoiser:
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.unet, self.vae, self.pipe.text_encoder, self.pipe.text_encoder_2):
            if module is not None:
                module.to(**kwargs)
        self._time_ids.clear()
        self._upcast_vae()
        return self

    def _upcast_vae(self) -> None:
        """The pipeline upcasts an fp16 VAE with ``force_upcast`` before decoding (it overflows in fp16);
        here it stays fp32 (encode and decode), which costs the VAE's fp32 weights (about 0.3 GB for SDXL)."""
        if self.vae.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False):
            self.vae.to(torch.float32)

    # -- text -------------------------------------------------------------------------------
    @property
    def text_encoders_loaded(self) -> bool:
        return self.pipe.text_encoder is not None or self.pipe.text_encoder_2 is not None

    def _encode(self, prompts: list[str], negative: bool = False) -> tuple[Tensor, Tensor]:
        if not self.text_encoders_loaded:
            raise RuntimeError(
                f"the text encoders were freed (free_text_encoders) and prompt(s) {prompts!r} were not encoded "
                "before; pass every prompt to free_text_encoders, or reload the model")
        with torch.no_grad():
            embeds, negative_embeds, pooled, negative_pooled = self.pipe.encode_prompt(
                prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=negative)
        if negative:
            return negative_embeds.float(), negative_pooled.float()
        return embeds.float(), pooled.float()

    def encode_prompt(self, prompts: Sequence[str]) -> Cond:
        """``prompt_embeds`` (B, L, D₁ + D₂) and pooled ``text_embeds`` (B, P) from the pipeline's
        ``encode_prompt``; each distinct prompt is encoded once and cached on the denoiser."""
        prompts = [str(p) for p in prompts]
        new = list(dict.fromkeys(p for p in prompts if p not in self._prompts))
        if new:
            embeds, pooled = self._encode(new)
            for k, prompt in enumerate(new):
                self._prompts[prompt] = (embeds[k : k + 1], pooled[k : k + 1])
        rows = [self._prompts[p] for p in prompts]
        return Cond({"prompt_embeds": torch.cat([r[0] for r in rows]).to(self.device),
                     "text_embeds": torch.cat([r[1] for r in rows]).to(self.device)})

    def _negative_cond(self, batch: int) -> Cond:
        """The pipeline's unconditional embeddings for guidance (no negative prompt), repeated."""
        if "" not in self._negative:
            self._negative[""] = self._encode([""], negative=True)
        embeds, pooled = self._negative[""]
        return Cond({"prompt_embeds": embeds.to(self.device), "text_embeds": pooled.to(self.device)}).repeat(batch)

    def _unconditional(self, batch: int) -> Cond:
        """What an empty Cond stands for: the prompt "" (as the pipeline called with prompt="")."""
        return self.encode_prompt([""]).repeat(batch)

    def free_text_encoders(self, prompts: Sequence[str] = ()) -> SDXLDenoiser:
        """Encode ``prompts``, "" and the guidance negative, then drop both text encoders (the
        pipeline's too) so their memory can be reclaimed. Later calls with those prompts use the cache;
        any other prompt raises."""
        self.encode_prompt([*prompts, ""])
        self._negative_cond(1)
        self.pipe.text_encoder = self.pipe.text_encoder_2 = None
        self.text_encoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return self

    # -- the denoiser -----------------------------------------------------------------------
    def add_time_ids(self, height: int, width: int, projection_dim: int) -> Tensor:
        """(1, 6) micro-conditioning of an image of height × width pixels, by the pipeline's helper."""
        key = (height, width, projection_dim, self.original_size, self.crops_coords_top_left, self.target_size)
        if key not in self._time_ids:
            ids = self.pipe._get_add_time_ids(
                tuple(self.original_size or (height, width)), tuple(self.crops_coords_top_left),
                tuple(self.target_size or (height, width)), dtype=self.dtype,
                text_encoder_projection_dim=projection_dim)
            self._time_ids[key] = ids.to(self.device)
        return self._time_ids[key]

    def model_output(self, x: Tensor, t: int, cond: Cond) -> Tensor:
        """One UNet forward (two batched ones under classifier-free guidance) at training index t."""
        x = x.to(self.dtype)
        batch = x.shape[0]
        timestep = torch.tensor(int(t), device=x.device)
        cond = (cond if cond.tensors else self._unconditional(batch)).to(self.dtype)
        if self.guidance_scale != 1.0:
            cond = self._negative_cond(batch).to(self.dtype).cat(cond)
            x = torch.cat([x, x])
        f = self.scale_factor
        time_ids = self.add_time_ids(x.shape[-2] * f, x.shape[-1] * f, int(cond["text_embeds"].shape[-1]))
        added = {"text_embeds": cond["text_embeds"], "time_ids": time_ids.expand(x.shape[0], -1)}
        out = self.unet(x, timestep, encoder_hidden_states=cond["prompt_embeds"], added_cond_kwargs=added).sample
        if self.guidance_scale == 1.0:
            return out
        out_u, out_c = out.chunk(2)
        return out_u + self.guidance_scale * (out_c - out_u)

    # -- VAE --------------------------------------------------------------------------------
    def _latent_stats(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        config = self.vae.config
        if getattr(config, "latents_mean", None) is None or getattr(config, "latents_std", None) is None:
            return None
        mean, std = (torch.tensor(v).view(1, -1, 1, 1).to(like) for v in (config.latents_mean, config.latents_std))
        return mean, std

    def encode(self, images: Tensor) -> Tensor:
        """Model-space x0 of images (B, 3, H, W) in [0, 1]: the VAE posterior mean, normalised as the
        pipeline normalises latents (``(z − mean)·scaling/std`` or ``z·scaling``)."""
        x = images.to(self.device, torch.float32) * 2 - 1
        with torch.no_grad():
            z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean.float()
        stats = self._latent_stats(z)
        if stats is None:
            return z * self.vae.config.scaling_factor
        return (z - stats[0]) * self.vae.config.scaling_factor / stats[1]

    def decode(self, x0: Tensor) -> Tensor:
        """Images (B, 3, H, W), nominally in [0, 1], from model-space x0, denormalised as the pipeline
        does; differentiable through the decoder, not clamped."""
        stats = self._latent_stats(x0)
        scaling = self.vae.config.scaling_factor
        z = x0 / scaling if stats is None else x0 * stats[1] / scaling + stats[0]
        return (self.vae.decode(z.to(self.vae.dtype)).sample.float() + 1) / 2
