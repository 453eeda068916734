"""A tiny random-weight SDXL checkpoint (``tiny-sdxl``), written in the real diffusers layout.

Every part SDXL has, at toy size: a UNet with ``addition_embed_type="text_time"`` (pooled text
embedding + six micro-conditioning time ids), two CLIP text encoders (the second with a projection,
whose pooled output feeds the UNet) with byte-level tokenizers written locally, an 8× ``AutoencoderKL``
with SDXL's scaling factor and ``force_upcast``, and SDXL's Euler scheduler config. Loadable by
``fcs.load_denoiser("tiny-sdxl")`` and by diffusers' own ``StableDiffusionXLPipeline.from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fcs.tiny import seeded, tiny_vae, write_text_encoder

SDXL_SCHEDULER = dict(  # stabilityai/stable-diffusion-xl-base-1.0's scheduler_config.json
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    interpolation_type="linear",
    use_karras_sigmas=False,
    timestep_spacing="leading",
    steps_offset=1,
)
SDXL_SCHEDULER_EXTRA = dict(clip_sample=False, sample_max_value=1.0, set_alpha_to_one=False, skip_prk_steps=True)
SDXL_VAE_SCALING = 0.13025
TIME_EMBED_DIM = 8  # addition_time_embed_dim (256 in SDXL)
PROJECTION_DIM = 32  # text_encoder_2's projection (1280 in SDXL): the pooled embedding's width
HIDDEN = 32  # each CLIP encoder's width; the UNet's cross-attention width is their sum (768 + 1280 in SDXL)


def build_tiny_sdxl(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight SDXL-shaped checkpoint to ``path`` and return it.

    Latents have 4 channels at 1/8 of the image size, as in SDXL; the UNet downsamples once more,
    so image sides are multiples of 16. A 64×64 forward takes a few milliseconds on one CPU core.
    """
    with seeded(seed):
        return _write_tiny_sdxl(Path(path))


def _write_tiny_sdxl(path: Path) -> Path:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    path.mkdir(parents=True, exist_ok=True)
    width_1 = write_text_encoder(path, "text_encoder", "tokenizer", hidden_size=HIDDEN)
    width_2 = write_text_encoder(path, "text_encoder_2", "tokenizer_2", hidden_size=HIDDEN, with_projection=True,
                                 projection_dim=PROJECTION_DIM)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),  # SDXL: no attention at the finest level
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=width_1 + width_2,  # penultimate hidden states of both encoders, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + PROJECTION_DIM,
        norm_num_groups=32,
    )
    vae = tiny_vae(scaling_factor=SDXL_VAE_SCALING, force_upcast=True)
    unet.save_pretrained(path / "unet", safe_serialization=True)
    vae.save_pretrained(path / "vae", safe_serialization=True)
    EulerDiscreteScheduler(**SDXL_SCHEDULER).save_pretrained(path / "scheduler")
    config_file = path / "scheduler" / "scheduler_config.json"  # the keys SDXL's file carries for other schedulers
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **SDXL_SCHEDULER_EXTRA}, indent=2))
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "force_zeros_for_empty_prompt": True,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path
