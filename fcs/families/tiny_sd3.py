"""A tiny random-weight Stable Diffusion 3 / 3.5 checkpoint in the real diffusers layout.

Every part SD3.5 has, at toy width: an ``SD3Transformer2DModel`` (patch 2, one dual-attention block
and RMS q/k norm as in SD3.5, joint text-image attention), a 16-channel ``AutoencoderKL`` with 8×
downsampling and SD3's ``shift_factor``/``scaling_factor``, CLIP-L and CLIP-G text encoders with
projection (byte-level tokenizers), a T5 encoder (character-level tokenizer) and a
``FlowMatchEulerDiscreteScheduler`` with SD3's shift 3. Written offline; loads with
``StableDiffusion3Pipeline.from_pretrained`` and ``fcs.load_denoiser``. One transformer forward at
64×64 pixels takes a few ms on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from fcs.tiny import seeded, tiny_vae, write_t5_encoder, write_text_encoder

SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)  # SD3 / SD3.5's scheduler_config.json
SD3_VAE_SCALING = dict(scaling_factor=1.5305, shift_factor=0.0609)  # SD3's 16-channel VAE normalisation
CLIP_WIDTH, T5_WIDTH = 32, 64  # two CLIP encoders of 32 concatenate to 64 = T5's d_model, as 768 + 1280 ≤ 4096


def build_tiny_sd3(path: str | Path, seed: int = 0, **scheduler: object) -> Path:
    """Write the tiny SD3 checkpoint to ``path`` and return it.

    ``scheduler``: overrides of the scheduler config (e.g. ``use_dynamic_shifting=True``).
    """
    with seeded(seed):
        return _write(Path(path), {**SD3_SCHEDULER, **scheduler})


def _write(path: Path, scheduler_config: dict) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    transformer = SD3Transformer2DModel(
        sample_size=8,  # 64-pixel images: the pipeline's default size
        patch_size=2,
        in_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=T5_WIDTH,
        caption_projection_dim=32,  # = num_attention_heads · attention_head_dim
        pooled_projection_dim=2 * CLIP_WIDTH,  # the two CLIP projections concatenated
        out_channels=16,
        pos_embed_max_size=32,  # sides up to 32 · 2 · 8 = 512 pixels
        dual_attention_layers=(0,),  # SD3.5-medium's MMDiT-X block
        qk_norm="rms_norm",  # SD3.5
    )
    vae = tiny_vae(16, use_quant_conv=False, use_post_quant_conv=False, **SD3_VAE_SCALING)
    write_text_encoder(path, "text_encoder", "tokenizer", hidden_size=CLIP_WIDTH, with_projection=True,
                       projection_dim=CLIP_WIDTH)
    write_text_encoder(path, "text_encoder_2", "tokenizer_2", hidden_size=CLIP_WIDTH, with_projection=True,
                       projection_dim=CLIP_WIDTH)
    write_t5_encoder(path, "text_encoder_3", "tokenizer_3", d_model=T5_WIDTH)
    transformer.save_pretrained(path / "transformer", safe_serialization=True)
    vae.save_pretrained(path / "vae", safe_serialization=True)
    FlowMatchEulerDiscreteScheduler(**scheduler_config).save_pretrained(path / "scheduler")
    index = {
        "_class_name": "StableDiffusion3Pipeline",
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "text_encoder_3": ["transformers", "T5EncoderModel"],
        "tokenizer_3": ["transformers", "T5TokenizerFast"],
        "image_encoder": [None, None],
        "feature_extractor": [None, None],
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path
