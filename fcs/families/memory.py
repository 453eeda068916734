"""The full-size architecture of every family, built from configs in code (no download), and its memory.

    python -m fcs.families.memory                  # the tables
    python -m fcs.families.memory --gpus 22,79.2   # + the largest batch per task on 24 and 80 GB GPUs (docs/scaling.md)
    python -m fcs.families.memory --json

Parameter counts come from instantiating each full-size component on the ``meta`` device (no memory,
no weights); bytes = parameters × bytes of the dtype the family runs in. Activation memory per item is
traced on the ``meta`` device through the family's own :class:`fcs.denoiser.Denoiser` (the call path
the samplers use) by a dispatch mode that adds up every tensor the forward allocates and frees them
when they die: the peak of live activations, attention counted as the fused kernels of a GPU keep it
(output and log-sum-exp, no N² matrix). The exact JVP is traced as it runs (blockwise attention:
a block of queries' probabilities and tangents at a time) and, beside it, with math attention (N²
probabilities and their tangents: the path it replaced). Decoder-gradient tasks keep what autograd
saves in the VAE decoder for the backward of the constraint's residual; that is traced with saved-tensor hooks.

The configs are the published ones (``config.json`` of each hub repository, listed in
:data:`ARCHITECTURES`); :func:`build_denoiser` builds one with random weights on any device (the GPU
benchmark ``benchmarks/gpu.py`` builds them on the GPU this way) with the text encoders left out and
:func:`random_cond` giving prompt embeddings of the right shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

GB = 1e9  # decimal gigabytes, as GPU memory is sold

# -- text encoders (transformers configs) ------------------------------------------------------
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu", projection_dim=768)
OPENCLIP_H = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", projection_dim=512)
CLIP_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", projection_dim=1280)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)
CLIP_VIT_B32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=32, hidden_act="quick_gelu")  # the style task's default CLIP

TEXT_CLASSES = {"CLIPTextModel": CLIP_L, "CLIPTextModelWithProjection": CLIP_L, "T5EncoderModel": T5_XXL}

# -- VAEs and denoisers (diffusers configs) ----------------------------------------------------
_VAE = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            norm_num_groups=32)
SD_VAE = {**_VAE, "latent_channels": 4, "sample_size": 512, "scaling_factor": 0.18215}
SDXL_VAE = {**_VAE, "latent_channels": 4, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
SD3_VAE = {**_VAE, "latent_channels": 16, "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609,
           "use_quant_conv": False, "use_post_quant_conv": False}
FLUX_VAE = {**SD3_VAE, "scaling_factor": 0.3611, "shift_factor": 0.1159}

SD15_UNET = dict(sample_size=64, cross_attention_dim=768)  # every other field is diffusers' default = SD 1.5's
SD21_UNET = dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
    cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816)
SD35_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                   attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                   caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
                   dual_attention_layers=tuple(range(13)), qk_norm="rms_norm")
SD35_LARGE = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=38,
                  attention_head_dim=64, num_attention_heads=38, joint_attention_dim=4096,
                  caption_projection_dim=2432, pooled_projection_dim=2048, pos_embed_max_size=192,
                  qk_norm="rms_norm")
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))

SD_SCHEDULER = ("DDIMScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                      steps_offset=1, clip_sample=False, set_alpha_to_one=False))
SD21_SCHEDULER = ("DDIMScheduler", {**SD_SCHEDULER[1], "prediction_type": "v_prediction"})
SDXL_SCHEDULER = ("EulerDiscreteScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                 steps_offset=1, timestep_spacing="leading"))
SD3_SCHEDULER = ("FlowMatchEulerDiscreteScheduler", dict(num_train_timesteps=1000, shift=3.0))
FLUX_SCHEDULER = ("FlowMatchEulerDiscreteScheduler", dict(
    base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, num_train_timesteps=1000,
    shift=3.0, use_dynamic_shifting=True))


@dataclass(frozen=True)
class Architecture:
    """One family's full-size checkpoint: its components' classes and configs, and how it runs."""

    name: str
    hub_id: str  # where the configs are published
    pipeline: str  # diffusers pipeline class (model_index.json's _class_name)
    denoiser: tuple[str, dict]  # (diffusers class, config)
    vae: dict
    text_encoders: tuple[tuple[str, str, dict], ...]  # (pipeline attribute, transformers class, config)
    scheduler: tuple[str, dict]
    side: int  # the native image side (pixels)
    dtype: torch.dtype  # what the family runs in on a GPU
    cond: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-item shapes of the Cond tensors
    tiny: str = ""  # the built-in tiny model of the family (fcs.loading.BUILT)

    @property
    def vae_dtype(self) -> torch.dtype:
        """SDXL's denoiser keeps an fp16 VAE in fp32 (``force_upcast``); the others use the model's dtype."""
        return torch.float32 if self.vae.get("force_upcast") and self.dtype == torch.float16 else self.dtype


SD3_TEXT = (("text_encoder", "CLIPTextModelWithProjection", CLIP_L),
            ("text_encoder_2", "CLIPTextModelWithProjection", CLIP_G),
            ("text_encoder_3", "T5EncoderModel", T5_XXL))  # SD3 and SD3.5 medium/large alike
SD3_COND = {"encoder_hidden_states": (77 + 256, 4096), "pooled_projections": (2048,)}

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "StableDiffusionPipeline",
                 ("UNet2DConditionModel", SD15_UNET), SD_VAE, (("text_encoder", "CLIPTextModel", CLIP_L),),
                 SD_SCHEDULER, 512, torch.float16, {"encoder_hidden_states": (77, 768)}, "tiny"),
    Architecture("sd21", "stabilityai/stable-diffusion-2-1", "StableDiffusionPipeline",
                 ("UNet2DConditionModel", SD21_UNET), SD_VAE, (("text_encoder", "CLIPTextModel", OPENCLIP_H),),
                 SD21_SCHEDULER, 768, torch.float16, {"encoder_hidden_states": (77, 1024)}, "tiny-v"),
    Architecture("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "StableDiffusionXLPipeline",
                 ("UNet2DConditionModel", SDXL_UNET), SDXL_VAE,
                 (("text_encoder", "CLIPTextModel", CLIP_L), ("text_encoder_2", "CLIPTextModelWithProjection", CLIP_G)),
                 SDXL_SCHEDULER, 1024, torch.float16, {"prompt_embeds": (77, 2048), "text_embeds": (1280,)},
                 "tiny-sdxl"),
    Architecture("sd35-medium", "stabilityai/stable-diffusion-3.5-medium", "StableDiffusion3Pipeline",
                 ("SD3Transformer2DModel", SD35_MEDIUM), SD3_VAE,
                 SD3_TEXT, SD3_SCHEDULER, 1024, torch.bfloat16, SD3_COND, "tiny-sd3"),
    Architecture("sd35-large", "stabilityai/stable-diffusion-3.5-large", "StableDiffusion3Pipeline",
                 ("SD3Transformer2DModel", SD35_LARGE), SD3_VAE,
                 SD3_TEXT, SD3_SCHEDULER, 1024, torch.bfloat16, SD3_COND, "tiny-sd3"),
    Architecture("flux-dev", "black-forest-labs/FLUX.1-dev", "FluxPipeline", ("FluxTransformer2DModel", FLUX_DEV),
                 FLUX_VAE, (("text_encoder", "CLIPTextModel", CLIP_L), ("text_encoder_2", "T5EncoderModel", T5_XXL)),
                 FLUX_SCHEDULER, 1024, torch.bfloat16, {"prompt_embeds": (512, 4096), "pooled_prompt_embeds": (768,)},
                 "tiny-flux"),
)}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


# -- building -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    old = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_network(arch: Architecture, part: str, device: str | torch.device = "meta",
                  dtype: torch.dtype | None = None) -> torch.nn.Module:
    """One component ('denoiser', 'vae' or a text encoder's pipeline attribute) with random weights,
    created directly on ``device`` in ``dtype`` (``meta``: shapes only, no memory)."""
    import diffusers
    import transformers

    with torch.device(device), _default_dtype(dtype):
        if part == "denoiser":
            cls, config = arch.denoiser
            module = getattr(diffusers, cls)(**config)
        elif part == "vae":
            module = diffusers.AutoencoderKL(**arch.vae)
        else:
            _, cls, config = next(t for t in arch.text_encoders if t[0] == part)
            config_cls = transformers.T5Config if cls == "T5EncoderModel" else transformers.CLIPTextConfig
            module = getattr(transformers, cls)(config_cls(**config))
    if dtype is not None:  # buffers made in float32 on purpose (position tables) too, as from_pretrained does
        with _quiet_diffusers():
            module.to(dtype)
    return module.eval().requires_grad_(False)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(name: str) -> dict[str, int]:
    """{'denoiser': n, 'vae': n, <text encoder attribute>: n, ...} from meta-device instances."""
    arch = architecture(name)
    parts = ["denoiser", "vae", *(t[0] for t in arch.text_encoders)]
    return {part: parameter_count(build_network(arch, part)) for part in parts}


def clip_vision_parameters() -> int:
    """Parameters of the style task's default CLIP vision model (ViT-B/32), on the meta device."""
    import transformers

    with torch.device("meta"):
        return parameter_count(transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**CLIP_VIT_B32)))


def build_denoiser(name: str, device: str | torch.device = "meta", dtype: torch.dtype | None = None,
                   guidance_scale: float = 1.0):
    """The family's :class:`fcs.denoiser.Denoiser` over its full-size denoiser network and VAE with
    random weights built on ``device`` in ``dtype`` (default: the family's), wired through the family's
    diffusers pipeline object with the text encoders left out (give it :func:`random_cond`)."""
    import diffusers

    from fcs.families import family

    arch = architecture(name)
    dtype = dtype or arch.dtype
    net = build_network(arch, "denoiser", device, dtype)
    vae = build_network(arch, "vae", device, dtype)
    scheduler = getattr(diffusers, arch.scheduler[0])(**arch.scheduler[1])
    if arch.pipeline == "StableDiffusionPipeline":
        from fcs.families.unet import UNetDenoiser

        return UNetDenoiser(net, scheduler, vae=vae, guidance_scale=guidance_scale, name=name)
    none = {attr: None for attr, _, _ in arch.text_encoders}
    none |= {attr.replace("text_encoder", "tokenizer"): None for attr in none}
    key = "unet" if arch.pipeline == "StableDiffusionXLPipeline" else "transformer"
    pipe = getattr(diffusers, arch.pipeline)(vae=vae, scheduler=scheduler, **{key: net}, **none)
    with _quiet_diffusers():  # SDXL's fp32 VAE upcast makes diffusers warn about a cast it does not know
        return family(arch.pipeline).from_pipe(pipe, guidance_scale=guidance_scale, name=name)


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def random_cond(name: str, batch: int, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32,
                generator: torch.Generator | None = None):
    """Prompt embeddings of the family's shapes (what its text encoders would give), random."""
    from fcs.denoiser import Cond

    arch = architecture(name)
    if device == "meta" or torch.device(device).type == "meta":
        return Cond({k: torch.empty(batch, *shape, device="meta", dtype=dtype) for k, shape in arch.cond.items()})
    return Cond({k: torch.randn(batch, *shape, generator=generator).to(device, dtype)
                 for k, shape in arch.cond.items()})


# -- activation tracing on the meta device ------------------------------------------------------
class PeakMemory:
    """A dispatch mode adding up the bytes of every storage the traced ops create while it is alive:
    ``peak`` is the most held at once (beyond what existed before, e.g. the weights)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._record(out, (args, kwargs))
                return out

        self.mode = _Mode()
        self.live: dict[int, int] = {}
        self.refs: dict[int, int] = {}
        self.current = self.peak = 0

    def _record(self, out: Any, inputs: Any) -> None:
        from torch.utils._pytree import tree_flatten

        given = {t.untyped_storage()._cdata for t in tree_flatten(inputs)[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key not in self.live and key in given:  # a view of a tensor made before tracing (weights)
                continue
            if key not in self.live:
                self.live[key], self.refs[key] = storage.nbytes(), 0
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            self.current -= self.live.pop(key)
            del self.refs[key]

    def __enter__(self) -> PeakMemory:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)


class _FusedAttention(torch.autograd.Function):
    """What flash / memory-efficient SDPA allocates: the output, and log-sum-exp saved for backward."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: shapes only
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """``scaled_dot_product_attention`` as a GPU's fused kernels hold memory (no N² matrix), for tracing."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        return _FusedAttention.apply(query, key, value)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


@contextlib.contextmanager
def forward_mode_jvp() -> Iterator[None]:
    """``torch.func.jvp`` as plain forward-mode AD (dual tensors) while the block runs: the same tangent
    arithmetic, and it works under a dispatch mode (memory tracing, FLOP counting), functorch's does not."""
    import torch.autograd.forward_ad as fwAD

    original = torch.func.jvp

    def jvp(fn, primals, tangents):
        with fwAD.dual_level():
            out = fn(*(fwAD.make_dual(p, t) for p, t in zip(primals, tangents, strict=True)))
            primal, tangent = fwAD.unpack_dual(out)
            return primal, tangent

    torch.func.jvp = jvp
    try:
        yield
    finally:
        torch.func.jvp = original


def saved_for_backward(fn, *inputs: torch.Tensor, exclude: tuple[torch.nn.Module, ...] = ()) -> int:
    """Bytes autograd keeps for the backward of ``fn(*inputs)`` (each storage once, weights excluded)."""
    skip = {p.untyped_storage()._cdata for m in exclude for p in m.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in skip:
            seen[storage._cdata] = storage.nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*(x.detach().requires_grad_(True) for x in inputs))
    del out
    return sum(seen.values())


def activations(name: str, side: int | None = None) -> dict[str, float]:
    """Bytes per item at ``side`` (default: the family's native size), traced on the meta device:
    ``forward`` peak of one denoiser forward (fused attention), ``jvp`` peak of one exact JVP as
    :meth:`Denoiser.jvp` runs it (blockwise attention, :mod:`fcs.attention_jvp`), ``jvp_math`` the same
    with math attention (N² probabilities and tangents, the path it replaced), ``decode`` peak of one
    VAE decode, ``decoder_saved`` what a decoder-gradient residual keeps for its backward, ``encode``
    peak of one VAE encode."""
    arch = architecture(name)
    side = side or arch.side
    den = build_denoiser(name, "meta")
    c, h, w = den.latent_shape(side, side)
    x = torch.empty(1, c, h, w, device="meta")
    cond = random_cond(name, 1, "meta", arch.dtype)
    t = 500 if den.prediction_type != "flow" else 500.0
    out: dict[str, float] = {}
    with torch.no_grad():
        with fused_attention(), PeakMemory() as peak:
            den.predict(x, t, cond)
        out["forward"] = peak.peak
        for kind, key in (("blockwise", "jvp"), ("math", "jvp_math")):
            den.jvp_attention = kind
            with forward_mode_jvp(), PeakMemory() as peak:
                den.jvp(x, torch.empty_like(x), t, cond)
            out[key] = peak.peak
        den.jvp_attention = "blockwise"
        with fused_attention(), PeakMemory() as peak:
            den.decode(x)
        out["decode"] = peak.peak
        with fused_attention(), PeakMemory() as peak:
            den.encode(torch.empty(1, 3, side, side, device="meta"))
        out["encode"] = peak.peak
    with fused_attention():
        out["decoder_saved"] = saved_for_backward(den.decode, x, exclude=(den.vae,))
    return out


# -- the tables ---------------------------------------------------------------------------------
BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def family_memory(name: str, with_activations: bool = True) -> dict:
    """Parameters, weight bytes and (optionally) per-item activation bytes of one family."""
    arch = architecture(name)
    counts = parameter_counts(name)
    text = {k: v for k, v in counts.items() if k.startswith("text_encoder")}
    size = BYTES[arch.dtype]
    report = {
        "family": name, "hub_id": arch.hub_id, "side": arch.side, "dtype": DTYPE_NAMES[arch.dtype],
        "vae_dtype": DTYPE_NAMES[arch.vae_dtype], "params": counts,
        "bytes": {"denoiser": counts["denoiser"] * size, "vae": counts["vae"] * BYTES[arch.vae_dtype],
                  "text_encoders": sum(text.values()) * size},
    }
    report["bytes"]["total"] = sum(report["bytes"].values())
    if with_activations:
        report["activations_per_item"] = activations(name)
    return report


def memory_report(names: list[str] | None = None, with_activations: bool = True) -> dict:
    families = [family_memory(n, with_activations) for n in (names or list(ARCHITECTURES))]
    return {"families": families, "clip_vision_params": clip_vision_parameters()}


USABLE = 0.9  # share of a GPU's memory a batch may plan on (allocator, CUDA context and workspaces take the rest)


def largest_batches(family: dict, memory_gib: float, text_encoders: bool = True) -> dict[str, int]:
    """The largest batch of each kind of task that fits a GPU of ``memory_gib`` (GiB, as torch and
    nvidia-smi report it): weights (text encoders held unless ``text_encoders`` is False) + batch ×
    per-item peak ≤ :data:`USABLE` × memory. Latent-mask tasks (restore, outpaint, layers) peak at the exact
    JVP or the final decode; decoder-gradient tasks (superres decoder, style) at the JVP or the decoder's
    forward with what it keeps for the backward."""
    a, b = family["activations_per_item"], family["bytes"]
    free = USABLE * memory_gib * 2**30 - b["total"] + (0 if text_encoders else b["text_encoders"])
    per_item = {"latent": max(a["jvp"], a["decode"]), "decoder": max(a["jvp"], a["decode"] + a["decoder_saved"])}
    return {kind: max(int(free // need), 0) for kind, need in per_item.items()}


def _m(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _gb(n: float) -> str:
    return f"{n / GB:.2f}"


def format_tables(report: dict, gpus: tuple[float, ...] = ()) -> str:
    """The markdown tables that ``python -m fcs.families.memory`` prints (docs/scaling.md quotes them);
    ``gpus``: GPU memory sizes (GiB) to give the largest batch per task kind for."""
    lines = ["Weights (parameters counted on the meta device × bytes of the dtype each family runs in; "
             "GB = 10⁹ bytes):", "",
             "| family | dtype | denoiser | VAE | text encoders | denoiser + VAE GB | text encoders GB "
             "(`free_text_encoders` frees) | all GB |", "|---|---|---|---|---|---|---|---|"]
    for f in report["families"]:
        p, b = f["params"], f["bytes"]
        text = " + ".join(_m(v) for k, v in p.items() if k.startswith("text_encoder"))
        vae = f"{_m(p['vae'])}" + (f" ({f['vae_dtype']})" if f["vae_dtype"] != f["dtype"] else "")
        lines.append(f"| {f['family']} ({f['side']}²) | {f['dtype']} | {_m(p['denoiser'])} | {vae} | {text} | "
                     f"{_gb(b['denoiser'] + b['vae'])} | {_gb(b['text_encoders'])} | {_gb(b['total'])} |")
    if all("activations_per_item" in f for f in report["families"]):
        lines += ["", "Activations per item in the batch at the native size, GB (traced on the meta device through "
                  "the family's Denoiser; grows linearly with the batch):", "",
                  "| family | denoiser forward (fused attention) | exact JVP (math attention) | exact JVP "
                  "(blockwise attention, what runs) | blockwise JVP / forward | VAE decode | "
                  "VAE encode | decoder-gradient tasks: kept for the backward |", "|---|---|---|---|---|---|---|---|"]
        for f in report["families"]:
            a = f["activations_per_item"]
            lines.append(f"| {f['family']} ({f['side']}²) | {_gb(a['forward'])} | {_gb(a['jvp_math'])} | "
                         f"{_gb(a['jvp'])} | {a['jvp'] / a['forward']:.1f}× | "
                         f"{_gb(a['decode'])} | {_gb(a['encode'])} | {_gb(a['decoder_saved'])} |")
        lines += ["", "These are the bytes the tensors hold; the CUDA allocator, context and cuBLAS/cuDNN workspaces "
                  f"come on top, so batches below plan on {USABLE:.0%} of the GPU."]
        if gpus:
            lines += ["", "Largest batch per GPU at the native size (weights + batch × per-item peak; text encoders "
                      "held / freed by `free_text_encoders`):", "",
                      "| family | " + " | ".join(f"{g:g} GiB: restore, outpaint, layers | {g:g} GiB: superres "
                                                  "(decoder), style" for g in gpus) + " |",
                      "|---|" + "---|---|" * len(gpus)]
            for f in report["families"]:
                cells = []
                for g in gpus:
                    held, freed = largest_batches(f, g), largest_batches(f, g, text_encoders=False)
                    cells += [f"{held[k]} / {freed[k]}" for k in ("latent", "decoder")]
                lines.append(f"| {f['family']} ({f['side']}²) | " + " | ".join(cells) + " |")
    clip = report["clip_vision_params"]
    lines += ["", "Per task, held during sampling besides the weights and one denoiser forward (or exact JVP) "
              "per item:",
              "- restore, outpaint, layers: nothing more (latent-mask residual); one VAE decode per item at the end "
              "(layers: `samples` branches per image are a batch of that many);",
              "- superres `decoder` (default), style: the VAE decode of x̂0 and what it keeps for the backward, every "
              "inner step (the column above);",
              "- superres `encoder`: one decode and two encodes per inner step, no backward;",
              f"- style: also the CLIP vision model ({_m(clip)} params, ViT-B/32, at 224²).", "",
              "`jacobian=\"auto\"` runs the exact JVP in fp16/bf16 (every GPU run) and the FD step (one more fused "
              "forward) in fp32."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fcs.families.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(ARCHITECTURES), help="comma-separated, default all")
    parser.add_argument("--no-activations", action="store_true", help="weights only (fast)")
    parser.add_argument("--gpus", default="", help="GPU memory sizes in GiB for the largest-batch table, e.g. 22,79.2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = memory_report(args.families.split(","), not args.no_activations)
    gpus = tuple(float(g) for g in args.gpus.split(",") if g) if not args.no_activations else ()
    print(json.dumps(report, indent=2) if args.json else format_tables(report, gpus), end="")


if __name__ == "__main__":
    main()
