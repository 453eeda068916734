"""Tiny diffusers models with random weights, written to disk in the real checkpoint layout.

They are loaded back through the same ``from_pretrained`` path as a hub checkpoint, so tests and
offline demos exercise real loading code. Outputs are meaningless images; shapes and code paths are
real: an SD-shaped latent model (UNet2DConditionModel + AutoencoderKL with 8x downsampling + CLIP
text encoder + tokenizer + DDIM scheduler) and a pixel-space model (UNet2DModel + DDIM scheduler).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

SD15_SCHEDULER = dict(  # Stable Diffusion 1.5's noise schedule and DDIM step layout
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeded weights without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _bytes_to_unicode() -> list[str]:
    """The byte -> printable-character table of GPT-2/CLIP byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_tokenizer(path: Path) -> int:
    """A byte-level CLIP tokenizer with no merges (every byte its own token); returns vocab size."""
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (path / "merges.txt").write_text("#version: 0.2\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 16, "tokenizer_class": "CLIPTokenizer"})
    )
    return len(tokens)


def build_tiny_sd(path: str | Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """Write a tiny random-weight Stable-Diffusion-shaped checkpoint to ``path`` and return it.

    Latents have 4 channels at 1/8 of the image size, as in SD 1.x/2.x.
    """
    with seeded(seed):
        return _write_tiny_sd(Path(path), prediction_type)


def _write_tiny_sd(path: Path, prediction_type: str) -> Path:
    from diffusers import DDIMScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = tiny_vae()
    write_text_encoder(path)
    scheduler = DDIMScheduler(prediction_type=prediction_type, **SD15_SCHEDULER)
    unet.save_pretrained(path / "unet", safe_serialization=True)
    vae.save_pretrained(path / "vae", safe_serialization=True)
    scheduler.save_pretrained(path / "scheduler")
    _write_model_index(path, "StableDiffusionPipeline")
    return path


def tiny_vae(latent_channels: int = 4, **config):
    """A tiny random-weight ``AutoencoderKL`` with 8× downsampling (weights from the caller's RNG);
    ``config`` adds a family's own fields (scaling and shift factors, quant convs, ...)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        **config,
    )


def write_text_encoder(path: Path, encoder_dir: str = "text_encoder", tokenizer_dir: str = "tokenizer",
                       hidden_size: int = 32, with_projection: bool = False, projection_dim: int = 32) -> int:
    """Write a tiny random-weight ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``, as SDXL's and
    SD3's second encoder) and its byte-level tokenizer to ``path/encoder_dir`` and
    ``path/tokenizer_dir``; returns the hidden size (the UNet's cross-attention width). Weights come
    from the caller's RNG (seed it for reproducible files)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab_size = _write_tokenizer(path / tokenizer_dir)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=16,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        projection_dim=projection_dim,
    )
    model = CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)
    model.save_pretrained(path / encoder_dir, safe_serialization=True)
    return config.hidden_size


def write_t5_encoder(path: Path, encoder_dir: str = "text_encoder_3", tokenizer_dir: str = "tokenizer_3",
                     d_model: int = 32) -> int:
    """Write a tiny random-weight ``T5EncoderModel`` and an offline character-level T5 tokenizer
    (a Unigram ``tokenizers`` model: lowercase letters, digits, punctuation, EOS appended) to
    ``path/encoder_dir`` and ``path/tokenizer_dir``; returns d_model (SD3's and FLUX's third/second
    encoder). Weights come from the caller's RNG."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    tokens = ["<pad>", "</s>", "<unk>", *sorted(set(string.ascii_lowercase + string.digits + string.punctuation)),
              "▁"]
    tok = Tokenizer(models.Unigram([(t, 0.0) for t in tokens], unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.Metaspace()
    T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                    extra_ids=0).save_pretrained(path / tokenizer_dir)
    config = T5Config(vocab_size=len(tokens), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(path / encoder_dir, safe_serialization=True)
    return d_model


def _tiny_pixel_unet(sample_size: int):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def build_tiny_sd_v(path: str | Path, seed: int = 0) -> Path:
    """The tiny SD model with a v-prediction scheduler (SD 2.x style)."""
    return build_tiny_sd(path, prediction_type="v_prediction", seed=seed)


def build_tiny_pixel(path: str | Path, sample_size: int = 16, seed: int = 0) -> Path:
    """Write a tiny random-weight pixel-space ``UNet2DModel`` checkpoint (3 channels) to ``path``."""
    from diffusers import DDIMScheduler

    path = Path(path)
    with seeded(seed):
        unet = _tiny_pixel_unet(sample_size)
    unet.save_pretrained(path / "unet", safe_serialization=True)
    DDIMScheduler(
        **{**SD15_SCHEDULER, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    ).save_pretrained(path / "scheduler")
    _write_model_index(path, "DDIMPipeline")
    return path


def _write_model_index(path: Path, class_name: str) -> None:
    parts = {
        "unet": ["diffusers", "UNet2DConditionModel" if class_name != "DDIMPipeline" else "UNet2DModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    if class_name != "DDIMPipeline":
        parts |= {
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
        }
    (path / "model_index.json").write_text(json.dumps({"_class_name": class_name, **parts}, indent=2))


def build_tiny_clip_vision(path: str | Path, seed: int = 0) -> Path:
    """A tiny random-weight ``CLIPVisionModel`` (32×32 input, 4 layers) for style tests."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    path = Path(path)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=4,
                              image_size=32, patch_size=4)
    with seeded(seed):
        model = CLIPVisionModel(config)
    model.save_pretrained(path, safe_serialization=True)
    return path
