"""Stable Diffusion 3 and 3.5 (``StableDiffusion3Pipeline``) as a :class:`fcs.denoiser.Denoiser`.

Rectified flow: x_s = (1 − s)·x0 + s·ε (α = 1 − s, σ = s) and the MMDiT predicts v ≈ ε − x0 (the
``flow`` convention of :mod:`fcs.schedule`). The transformer is called with timestep 1000·s; the flow
times s are the ``FlowMatchEulerDiscreteScheduler``'s sigmas (its shift, or its resolution-dependent
shift μ when ``use_dynamic_shifting`` is set), so the outer loop's DDIM transition is exactly the
scheduler's Euler step and the loop's last x̂0 = x − s·v is its last Euler step to s = 0.

Everything model-specific comes from the loaded diffusers pipeline itself: prompts go through its
``encode_prompt`` (CLIP-L and CLIP-G penultimate states concatenated and zero-padded to T5's width,
followed by T5's states, or zeros where ``text_encoder_3`` is None; pooled = both CLIP projections),
μ through its ``calculate_shift``, and the VAE normalisation is its (latents − shift_factor)·scaling_factor.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fcs.denoiser import Cond, Denoiser
from fcs.families.group_norm import vae_levels
from fcs.schedule import Schedule

log = logging.getLogger(__name__)

TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


class SD3Denoiser(Denoiser):
    """Wraps a loaded ``StableDiffusion3Pipeline`` (its modules are shared, not copied).

    Args:
        pipe: the pipeline (SD3 or SD3.5; ``text_encoder_3=None`` runs without T5, as diffusers does).
        guidance_scale: classifier-free guidance against the empty prompt, applied when > 1 as in
            the diffusers pipeline (one transformer pass over the doubled batch per forward).
        max_sequence_length: T5 tokens per prompt (diffusers' default 256).
        prompt_cache: how many distinct prompts keep their embeddings (least recently used ones go).

    Prompt embeddings are computed once per distinct prompt and cached on the denoiser (shared by
    its ``with_guidance`` views). :meth:`free_text_encoders` encodes the prompts a job will use and
    then drops the three text encoders (T5-XXL alone is 4.7 B parameters); afterwards only cached
    prompts can be used.
    """

    prediction_type = "flow"

    def __init__(self, pipe: Any, guidance_scale: float = 1.0, name: str = "model",
                 max_sequence_length: int = 256, prompt_cache: int = 64) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.pipe = pipe
        self.transformer, self.vae = pipe.transformer, pipe.vae
        # our own scheduler: set_timesteps must not disturb the pipeline's
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        if self.scheduler.config.get("invert_sigmas"):
            raise ValueError("a scheduler with invert_sigmas=True is not SD3's flow convention")
        self.guidance_scale = float(guidance_scale)
        self.name = name
        self.max_sequence_length = int(max_sequence_length)
        self.prompt_cache = int(prompt_cache)
        for module in (self.transformer, self.vae, *self._text_encoders()):
            module.requires_grad_(False).eval()
        if self.transformer.config.in_channels != self.vae.config.latent_channels:
            raise ValueError(
                f"the transformer takes {self.transformer.config.in_channels} input channels but the VAE makes "
                f"{self.vae.config.latent_channels}: not a base SD3 checkpoint; load the base model")
        self._prompts: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()  # shared with views
        self._latent_hw: tuple[int, int] | None = None  # of the last encode (for dynamic shifting)

    @classmethod
    def from_pipe(cls, pipe: Any, guidance_scale: float = 1.0, name: str = "model", **options: Any) -> SD3Denoiser:
        """The denoiser of a loaded ``StableDiffusion3Pipeline`` (shared, not copied)."""
        return cls(pipe, guidance_scale=guidance_scale, name=name, **options)

    # -- properties -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def scale_factor(self) -> int:
        return self.pipe.vae_scale_factor

    @property
    def patch_size(self) -> int:
        return self.transformer.config.patch_size

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of the VAE factor times the transformer's patch (16)."""
        return self.scale_factor * self.patch_size

    def max_side(self) -> int | None:
        """The largest image side (pixels) the transformer's cropped position embedding covers."""
        cells = self.transformer.config.pos_embed_max_size
        return None if cells is None else cells * self.size_multiple

    def norm_levels(self) -> list[tuple[int, int]]:
        """The VAE's group norms (the transformer has none)."""
        return vae_levels(self.vae.config)

    def _text_encoders(self) -> list[torch.nn.Module]:
        return [m for m in (getattr(self.pipe, n, None) for n in TEXT_ENCODERS) if m is not None]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> SD3Denoiser:
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.transformer, self.vae, *self._text_encoders()):
            module.to(**kwargs)
        for prompt, tensors in self._prompts.items():  # in place: views share the cache
            self._prompts[prompt] = tuple(t.to(**kwargs) for t in tensors)
        return self

    def accelerate(self, compile: bool = False, channels_last: bool = False, backend: str = "inductor") -> SD3Denoiser:
        """GPU serving switches, off by default (the job actor's ``compile_unet``/``channels_last``):
        ``torch.compile`` of the transformer (static shapes); channels-last is a no-op here (the
        transformer works on token sequences). The exact JVP always runs the eager transformer."""
        if channels_last:
            log.info("channels_last has no effect on SD3's transformer; ignored")
        if compile:
            self.transformer = torch.compile(self.transformer, backend=backend, dynamic=False)
        return self

    # -- schedule ---------------------------------------------------------------------------
    def coefficients(self, t: float) -> tuple[float, float]:
        """(α, σ) = (1 − s, s) for the transformer timestep t = 1000·s."""
        s = float(t) / self.scheduler.config.num_train_timesteps
        return 1.0 - s, s

    def schedule(self, steps: int, shape: Sequence[int] | None = None) -> Schedule:
        """The scheduler's ``steps`` flow times (its shift applied), noisiest first; the terminal
        s = 0 is the loop's final x̂0. With ``use_dynamic_shifting`` μ follows the latent size as in
        the pipeline: ``shape`` (…, h, w) of one sample, else the size of the last :meth:`encode`
        (the constraint's image, encoded just before sampling in every task), else the
        transformer's ``sample_size``. SD3 and SD3.5 ship a static shift of 3."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        config, kwargs = self.scheduler.config, {}
        if config.get("use_dynamic_shifting"):
            default = self._latent_hw or (self.transformer.config.sample_size,) * 2
            h, w = tuple(shape[-2:]) if shape is not None else default
            kwargs["mu"] = calculate_shift(
                (h // self.patch_size) * (w // self.patch_size),
                config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5), config.get("max_shift", 1.16))
        self.scheduler.set_timesteps(steps, **kwargs)
        return Schedule.flow(self.scheduler.sigmas[:-1].tolist(), time_scale=config.num_train_timesteps)

    # -- text -------------------------------------------------------------------------------
    def encode_prompt(self, prompts: Sequence[str]) -> Cond:
        """``encoder_hidden_states`` (B, 77 + 256, 4096 for SD3) and ``pooled_projections`` (B, 2048)
        from the pipeline's own ``encode_prompt``, once per distinct prompt (cached)."""
        prompts = list(prompts)
        new = list(dict.fromkeys(p for p in prompts if p not in self._prompts))
        if new:
            self._encode(new)
        for p in prompts:
            self._prompts.move_to_end(p)
        rows = [self._prompts[p] for p in prompts]
        while len(self._prompts) > max(self.prompt_cache, len(set(prompts)), 1) and self._text_encoders():
            self._prompts.popitem(last=False)
        return Cond({"encoder_hidden_states": torch.cat([r[0] for r in rows]),
                     "pooled_projections": torch.cat([r[1] for r in rows])})

    def _encode(self, prompts: list[str]) -> None:
        if getattr(self.pipe, "text_encoder", None) is None or getattr(self.pipe, "text_encoder_2", None) is None:
            known = ", ".join(repr(p) for p in self._prompts) or "none"
            raise ValueError(f"the text encoders were freed, so new prompts cannot be encoded: {prompts!r}; "
                             f"encoded before freeing: {known}")
        with torch.no_grad():
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts, prompt_2=None, prompt_3=None, device=self.device, do_classifier_free_guidance=False,
                max_sequence_length=self.max_sequence_length)
        for i, prompt in enumerate(prompts):
            self._prompts[prompt] = (embeds[i : i + 1], pooled[i : i + 1])

    def free_text_encoders(self, prompts: Sequence[str] = ()) -> SD3Denoiser:
        """Encode ``prompts`` and the empty prompt (guidance's unconditional branch), keep their
        embeddings, and drop the three text encoders from the pipeline (their memory is freed once
        nothing else holds them). Afterwards only those prompts can be used."""
        self.encode_prompt(["", *prompts])
        for name in TEXT_ENCODERS:
            if getattr(self.pipe, name, None) is not None:
                setattr(self.pipe, name, None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return self

    # -- the denoiser -----------------------------------------------------------------------
    def model_output(self, x: Tensor, t: float, cond: Cond) -> Tensor:
        """v̂ at x_s: one transformer forward at timestep t = 1000·s (over the doubled batch under
        classifier-free guidance, unconditional half first, as the pipeline does). An empty ``cond``
        means the empty prompt (SD3 has no other unconditional input)."""
        self._check_size(x)
        b = x.shape[0]
        x = x.to(self.dtype)
        guided = self.guidance_scale > 1.0 and bool(cond.tensors)
        if not cond.tensors:
            cond = self.encode_prompt([""]).repeat(b)
        cond = cond.to(self.dtype)
        if guided:
            cond = self.encode_prompt([""]).repeat(b).to(self.dtype).cat(cond)
            x = torch.cat([x, x])
        timestep = torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)
        out = self.transformer(hidden_states=x, timestep=timestep, **cond.tensors, return_dict=False)[0]
        if not guided:
            return out
        out_u, out_c = out.chunk(2)
        return out_u + self.guidance_scale * (out_c - out_u)

    def _check_size(self, x: Tensor) -> None:
        h, w = x.shape[-2:]
        cells = self.transformer.config.pos_embed_max_size
        if cells is not None and max(h, w) > cells * self.patch_size:
            raise ValueError(f"a {w * self.scale_factor}x{h * self.scale_factor} image is larger than this SD3 "
                             f"transformer's position embedding covers ({self.max_side()} pixels a side)")

    def jvp(self, x: Tensor, tangent: Tensor, t: float, cond: Cond | None = None) -> Tensor:
        """Exact J·tangent with J = ∂x̂0/∂x_t by forward-mode AD (one forward-mode transformer pass).

        SD3's attention calls ``scaled_dot_product_attention`` directly, and forward-mode AD has no
        rule for its fused kernels, so this call alone runs it by :func:`fcs.attention_jvp.jvp_attention`.
        """
        from fcs.attention_jvp import jvp_attention

        view = copy.copy(self)
        view.transformer = getattr(self.transformer, "_orig_mod", self.transformer)  # eager module

        def tweedie(x_in: Tensor) -> Tensor:
            return view.predict(x_in, t, cond)[1]

        dtype = self.dtype
        with jvp_attention(self.jvp_attention, view.transformer):
            _, jv = torch.func.jvp(tweedie, (x.to(dtype).contiguous(),), (tangent.to(dtype).contiguous(),))
        return jv.float()

    # -- VAE --------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """(VAE posterior mean − shift_factor) · scaling_factor of images (B, 3, H, W) in [0, 1]."""
        x = images.to(self.device, torch.float32) * 2 - 1
        with torch.no_grad():
            mean = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean.float()
        self._latent_hw = tuple(mean.shape[-2:])
        return (mean - self.vae.config.shift_factor) * self.vae.config.scaling_factor

    def decode(self, x0: Tensor) -> Tensor:
        """Images (B, 3, H, W), nominally in [0, 1]; differentiable through the decoder, not clamped."""
        z = x0 / self.vae.config.scaling_factor + self.vae.config.shift_factor
        return (self.vae.decode(z.to(self.vae.dtype)).sample.float() + 1) / 2
