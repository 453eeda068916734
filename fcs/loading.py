"""Load a diffusers checkpoint (hub id or local folder, safetensors only) as a :class:`Denoiser`."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fcs.denoiser import Denoiser

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """'auto' (or None) means fp16 on CUDA and fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)} or 'auto'")
    return DTYPES[dtype]


def resolve_device(device: str | None) -> str:
    """'auto' (or None) picks cuda, then mps, then cpu."""
    if device not in (None, "auto"):
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_denoiser(
    model: str | Path,
    device: str | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    guidance_scale: float = 1.0,
) -> Denoiser:
    """Load ``model`` (a hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5`` or a local
    folder in diffusers layout) through ``DiffusionPipeline.from_pretrained`` with safetensors only.

    Latent models (with a ``vae``) and pixel-space ``UNet2DModel`` checkpoints both work; every
    part is loaded in ``dtype`` ('auto': fp16 on CUDA, fp32 elsewhere).
    """
    from diffusers import DiffusionPipeline

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    source = str(model)
    if Path(source).exists():
        source = str(Path(source).resolve())
    log.info("loading %s on %s as %s", source, device, torch_dtype)
    try:
        index = DiffusionPipeline.load_config(source)
        extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        pipe = DiffusionPipeline.from_pretrained(source, dtype=torch_dtype, use_safetensors=True, **extra)
    except OSError as exc:
        raise OSError(
            f"cannot load model {str(model)!r}: {str(exc).splitlines()[0]} "
            "(give a local diffusers folder, a reachable hub id, or 'tiny' for the built-in test model)"
        ) from exc
    denoiser = Denoiser(
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        vae=getattr(pipe, "vae", None),
        text_encoder=getattr(pipe, "text_encoder", None),
        tokenizer=getattr(pipe, "tokenizer", None),
        guidance_scale=guidance_scale,
        name=str(model),
    )
    return denoiser.to(device)
