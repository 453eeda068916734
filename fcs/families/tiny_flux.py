"""A tiny random-weight FLUX.1 checkpoint (dev or schnell) in the real diffusers layout, for tests and --smoke.

Same parts and shapes as FLUX.1 where the code paths depend on them: a ``FluxTransformer2DModel`` on
2×2-packed 16-channel latents (64 input channels, RoPE over (0, row, col) position ids, guidance embedding
for dev), a 16-channel ``AutoencoderKL`` with 8× downsampling, no quant convs and FLUX's
``shift_factor``/``scaling_factor``, a CLIP text encoder (pooled output) and a T5 encoder (sequence
output) with offline tokenizers, and FLUX's ``FlowMatchEulerDiscreteScheduler`` config (dev: dynamic,
resolution-dependent shift; schnell: none). Loadable by ``fcs.load_denoiser`` and by diffusers'
``FluxPipeline.from_pretrained``; a forward pass at 64×64 pixels takes a few milliseconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from fcs.tiny import seeded, tiny_vae, write_t5_encoder, write_text_encoder

# FLUX.1's scheduler configs (black-forest-labs/FLUX.1-dev and -schnell, scheduler/scheduler_config.json)
DEV_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                     num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
SCHNELL_SCHEDULER = {**DEV_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": False}
VAE_SHIFT, VAE_SCALE = 0.1159, 0.3611  # FLUX.1's VAE normalisation: z = (mean - shift) * scale

COMPONENTS = {
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def build_tiny_flux(path: str | Path, seed: int = 0, guidance: bool = True) -> Path:
    """Write a tiny random-weight FLUX.1 checkpoint to ``path`` and return it: dev-like (guidance
    embedding, dynamic shift) with ``guidance=True``, schnell-like (neither) with ``guidance=False``."""
    with seeded(seed):
        return _write_tiny_flux(Path(path), guidance)


def _write_tiny_flux(path: Path, guidance: bool) -> Path:
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    clip_width = write_text_encoder(path, "text_encoder", "tokenizer", hidden_size=32)
    t5_width = write_t5_encoder(path, "text_encoder_2", "tokenizer_2", d_model=32)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels x 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=t5_width,
        pooled_projection_dim=clip_width,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim
    )
    vae = tiny_vae(16, scaling_factor=VAE_SCALE, shift_factor=VAE_SHIFT, use_quant_conv=False,
                   use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(**(DEV_SCHEDULER if guidance else SCHNELL_SCHEDULER))
    transformer.save_pretrained(path / "transformer", safe_serialization=True)
    vae.save_pretrained(path / "vae", safe_serialization=True)
    scheduler.save_pretrained(path / "scheduler")
    index = {"_class_name": "FluxPipeline", "_diffusers_version": diffusers.__version__, **COMPONENTS}
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path
