"""FLUX.1 dev and schnell (diffusers' ``FluxPipeline``) as a :class:`fcs.denoiser.Denoiser`.

Rectified flow: x_s = (1 − s)·x0 + s·ε and the transformer predicts v ≈ ε − x0 (``prediction_type``
'flow'), so x̂0 = x_s − s·v. Everything model-specific is the loaded pipeline's own code:

- schedule: the pipeline's σ grid ``linspace(1, 1/S, S)`` through its scheduler's ``set_timesteps``
  with the resolution-dependent shift μ = ``calculate_shift(packed sequence length)`` (dev; schnell's
  scheduler has no dynamic shift). The shift depends on the image size, so ``schedule`` takes the
  sample's (C, h, w) as ``shape`` (the samplers pass it); without it, the pipeline's default
  1024 × 1024 is assumed. Timesteps are the scheduler's 1000·s; the transformer gets s, as the
  pipeline passes ``timestep / 1000``.
- the sampler state stays (B, 16, H/8, W/8), so masks and constraints are unchanged; latents are packed
  into 2×2 patches (``_pack_latents``) only around the transformer call, with the pipeline's image
  position ids (``_prepare_latent_image_ids``) and all-zero text ids, and unpacked after it.
- conditioning: ``encode_prompt`` of the pipeline (CLIP pooled + T5 sequence embeddings), computed once
  per distinct prompt and cached on the denoiser (and on every ``with_guidance`` view of it).
  :meth:`FluxDenoiser.free_text_encoders` drops both text encoders after encoding the prompts a job
  needs (T5-XXL is 4.7 B parameters); a prompt not seen before then fails with a clear message.
- guidance: dev is guidance-distilled: ``guidance_scale`` is the value of its guidance embedding,
  passed on every call (one transformer forward per call, no unconditional pass). The pipeline's
  default is 3.5 (``from_pipe``'s default); ``fcs.load_denoiser`` and the task configs pass 1.0 unless
  told otherwise, which for a guidance-distilled model means "unguided", as for the other families.
  schnell has no guidance embedding and ignores ``guidance_scale``.
- VAE: z = (mean − shift_factor)·scaling_factor, decoded as z / scaling_factor + shift_factor.
- exact JVP: forward-mode AD through diffusers' attention dispatch with the native backend, attention
  by :func:`fcs.attention_jvp.jvp_attention` (blockwise), for the JVP call only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fcs.denoiser import Cond, Denoiser
from fcs.families.group_norm import vae_levels
from fcs.schedule import Schedule

DEFAULT_GUIDANCE = 3.5  # FluxPipeline's default guidance_scale (dev's embedded guidance)
TIME_SCALE = 1000  # the scheduler's timesteps are 1000·s; the transformer takes s


class FluxDenoiser(Denoiser):
    """Wraps a loaded diffusers ``FluxPipeline`` (its modules are shared, not copied).

    Args:
        pipe: a ``FluxPipeline`` (transformer, vae, text encoders, tokenizers, scheduler).
        guidance_scale: dev's embedded guidance (ignored by schnell, which has no guidance embedding).
        name: the model's name in reports.
        max_sequence_length: T5 tokens per prompt (the pipeline's default 512).
    """

    prediction_type = "flow"

    def __init__(self, pipe: Any, guidance_scale: float = DEFAULT_GUIDANCE, name: str = "model",
                 max_sequence_length: int = 512) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.pipe = pipe
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.guidance_scale = float(guidance_scale)
        self.name = name
        self.max_sequence_length = int(max_sequence_length)
        latent_channels = self.vae.config.latent_channels
        if self.transformer.config.in_channels != 4 * latent_channels:
            raise ValueError(
                f"the FLUX transformer takes {self.transformer.config.in_channels} input channels but 2x2-packed "
                f"latents of the VAE have {4 * latent_channels}: a Fill/Canny/Depth-finetuned transformer? fcs needs "
                "none; load the base FLUX.1 dev or schnell")
        # our own scheduler instance: set_timesteps changes its state
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        for module in (self.transformer, self.vae, pipe.text_encoder, pipe.text_encoder_2):
            if module is not None:
                module.requires_grad_(False).eval()
        self._prompts: dict[str, tuple[Tensor, Tensor]] = {}  # prompt -> (T5 embeds (1, L, D), pooled (1, P))

    @classmethod
    def from_pipe(cls, pipe: Any, guidance_scale: float = DEFAULT_GUIDANCE, name: str = "model",
                  **options: Any) -> FluxDenoiser:
        """The components of a loaded ``FluxPipeline`` (shared, not copied)."""
        return cls(pipe, guidance_scale=guidance_scale, name=name, **options)

    # -- properties -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def has_guidance(self) -> bool:
        """Whether the transformer has a guidance embedding (dev: yes, schnell: no)."""
        return bool(self.transformer.config.guidance_embeds)

    @property
    def channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def scale_factor(self) -> int:
        return self.pipe.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE factor times the 2×2 latent packing."""
        return 2 * self.scale_factor

    def norm_levels(self) -> list[tuple[int, int]]:
        """The VAE's group norms (the transformer has none)."""
        return vae_levels(self.vae.config)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> FluxDenoiser:
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in (self.transformer, self.vae, self.pipe.text_encoder, self.pipe.text_encoder_2):
            if module is not None:
                module.to(**kwargs)
        if device is not None:
            for prompt, tensors in self._prompts.items():
                self._prompts[prompt] = tuple(v.to(device) for v in tensors)
        return self

    def accelerate(self, compile: bool = False, channels_last: bool = False, backend: str = "inductor") -> FluxDenoiser:
        """Speed switch for GPU serving, off by default: ``torch.compile`` of the transformer (static
        shapes). ``channels_last`` is accepted for the common actor interface and does nothing (the
        transformer has no convolutions). The exact JVP always runs the uncompiled transformer."""
        if compile:
            self.transformer = torch.compile(self.transformer, backend=backend, dynamic=False)
        return self

    # -- schedule ---------------------------------------------------------------------------
    def shift(self, shape: Sequence[int] | None = None) -> float:
        """μ of the resolution-dependent shift for samples of ``shape`` (C, h, w) in latent space
        (None: the pipeline's default 1024 × 1024 image), by the pipeline's ``calculate_shift`` of the
        packed sequence length (h/2)·(w/2) and the scheduler's config."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        if shape is None:
            side = self.pipe.default_sample_size  # latent cells of a 1024-pixel side
            h = w = side
        else:
            h, w = int(shape[-2]), int(shape[-1])
        config = self.scheduler.config
        return calculate_shift((h // 2) * (w // 2), config.get("base_image_seq_len", 256),
                               config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                               config.get("max_shift", 1.15))

    def schedule(self, steps: int, shape: Sequence[int] | None = None) -> Schedule:
        """The pipeline's flow times for ``steps`` outer steps at sample ``shape`` (C, h, w), noisiest
        first: σ = linspace(1, 1/S, S) shifted by the scheduler (μ from ``shape``, see :meth:`shift`).
        Its last Euler step lands on σ = 0, i.e. on x̂0, which is what the samplers return."""
        from diffusers.pipelines.flux.pipeline_flux import retrieve_timesteps

        sigmas = np.linspace(1.0, 1 / steps, steps)
        if getattr(self.scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        retrieve_timesteps(self.scheduler, steps, "cpu", sigmas=sigmas, mu=self.shift(shape))
        return Schedule.flow([float(s) for s in self.scheduler.sigmas[:-1]], time_scale=TIME_SCALE)

    def coefficients(self, t: float) -> tuple[float, float]:
        """(α, σ) = (1 − s, s) at the scheduler's timestep t = 1000·s."""
        s = float(t) / TIME_SCALE
        return 1.0 - s, s

    # -- text -------------------------------------------------------------------------------
    def encode_prompt(self, prompts: Sequence[str]) -> Cond:
        """T5 sequence embeddings (B, L, D) as ``cond["prompt_embeds"]`` and CLIP pooled embeddings
        (B, P) as ``cond["pooled_prompt_embeds"]``, by the pipeline's ``encode_prompt``; each distinct
        prompt is encoded once per denoiser and cached."""
        prompts = [str(p) for p in prompts]
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompts]
        if missing:
            if self.pipe.text_encoder is None or self.pipe.text_encoder_2 is None:
                raise RuntimeError(
                    f"the text encoders were freed (free_text_encoders) and prompt(s) {missing!r} were not encoded "
                    "before; encode every prompt a job needs first: free_text_encoders(prompts)")
            with torch.no_grad():
                embeds, pooled, _ = self.pipe.encode_prompt(
                    prompt=missing, prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length)
            for i, prompt in enumerate(missing):
                self._prompts[prompt] = (embeds[i : i + 1], pooled[i : i + 1])
        rows = [self._prompts[p] for p in prompts]
        return Cond({"prompt_embeds": torch.cat([r[0] for r in rows]),
                     "pooled_prompt_embeds": torch.cat([r[1] for r in rows])})

    def free_text_encoders(self, prompts: Sequence[str] = ()) -> FluxDenoiser:
        """Encode ``prompts`` (and the empty prompt, for unconditional calls), then drop both text
        encoders from the pipeline so their memory can be reclaimed; cached prompts keep working, new
        ones fail. A batch job with one prompt calls this once per actor after loading."""
        self.encode_prompt([*prompts, ""])
        self.pipe.text_encoder = None
        self.pipe.text_encoder_2 = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return self

    # -- the denoiser -----------------------------------------------------------------------
    def model_output(self, x: Tensor, t: float, cond: Cond) -> Tensor:
        """One transformer forward at the scheduler's timestep t = 1000·s on x (B, 16, h, w), h and w
        even: v in the shape of x."""
        batch, channels, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"FLUX packs 2x2 latent patches: latent sides must be even, got {h}x{w}")
        dtype, device = self.dtype, x.device
        if not cond.tensors:
            cond = self.encode_prompt([""] * batch)
        embeds = cond["prompt_embeds"].to(device, dtype)
        pooled = cond["pooled_prompt_embeds"].to(device, dtype)
        pipe = self.pipe
        latents = pipe._pack_latents(x.to(dtype), batch, channels, h, w)
        image_ids = pipe._prepare_latent_image_ids(batch, h // 2, w // 2, device, dtype)
        text_ids = torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype)
        # as the pipeline: the float32 timestep cast to the latents' dtype, then / 1000
        timestep = torch.full((batch,), float(t), dtype=torch.float32, device=device).to(dtype) / TIME_SCALE
        guidance = (torch.full((batch,), self.guidance_scale, dtype=torch.float32, device=device)
                    if self.has_guidance else None)
        out = self.transformer(hidden_states=latents, timestep=timestep, guidance=guidance,
                               pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=text_ids,
                               img_ids=image_ids, return_dict=False)[0]
        factor = self.scale_factor
        return pipe._unpack_latents(out, h * factor, w * factor, factor)

    def jvp(self, x: Tensor, tangent: Tensor, t: float, cond: Cond | None = None) -> Tensor:
        """Exact J·tangent with J = ∂x̂0/∂x_t by forward-mode AD (one forward-mode transformer pass).

        FLUX attention goes through diffusers' attention dispatch; forward-mode AD has no rule for
        fused kernels, so this call alone runs the native backend (torch SDPA) with attention by
        :func:`fcs.attention_jvp.jvp_attention`. The primal stays fp32 (x̂0 = x − s·v keeps its identity
        part exact); the transformer runs in its dtype.
        """
        from fcs.attention_jvp import jvp_attention

        view = copy.copy(self)
        view.transformer = getattr(self.transformer, "_orig_mod", self.transformer)  # forward-mode AD runs eager

        def tweedie(x_in: Tensor) -> Tensor:
            return view.predict(x_in, t, cond)[1]

        with _native_attention(view.transformer), jvp_attention(self.jvp_attention, view.transformer):
            _, jv = torch.func.jvp(tweedie, (x.float().contiguous(),), (tangent.float().contiguous(),))
        return jv.float()

    # -- VAE --------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """Latents of images (B, 3, H, W) in [0, 1]: (posterior mean − shift_factor) · scaling_factor."""
        x = images.to(self.device, torch.float32) * 2 - 1
        with torch.no_grad():
            mean = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean
        config = self.vae.config
        return (mean.float() - config.shift_factor) * config.scaling_factor

    def decode(self, x0: Tensor) -> Tensor:
        """Images (B, 3, H, W), nominally in [0, 1], from latents; differentiable through the decoder,
        not clamped (constraint gradients survive saturated pixels)."""
        config = self.vae.config
        z = x0 / config.scaling_factor + config.shift_factor
        return (self.vae.decode(z.to(self.vae.dtype)).sample.float() + 1) / 2


@contextlib.contextmanager
def _native_attention(model: torch.nn.Module) -> Iterator[None]:
    """diffusers' native attention backend (torch SDPA) for every attention processor of ``model``
    while the block runs (a processor-level backend, set by ``set_attention_backend``, wins over the
    global one, so both are set), restored afterwards."""
    from diffusers.models.attention_dispatch import AttentionBackendName, attention_backend

    processors = [p for p in _processors(model) if hasattr(p, "_attention_backend")]
    saved = [p.__dict__.get("_attention_backend", _UNSET) for p in processors]
    try:
        for p in processors:
            p._attention_backend = AttentionBackendName.NATIVE
        with attention_backend(AttentionBackendName.NATIVE):
            yield
    finally:
        for p, old in zip(processors, saved, strict=True):
            if old is _UNSET:
                del p._attention_backend
            else:
                p._attention_backend = old


_UNSET = object()


def _processors(model: torch.nn.Module) -> list[Any]:
    seen: dict[int, Any] = {}
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if processor is not None:
            seen.setdefault(id(processor), processor)
    return list(seen.values())
