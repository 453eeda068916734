"""Load a diffusers checkpoint (hub id or local folder, safetensors only) as a :class:`Denoiser`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from fcs.denoiser import Denoiser
from fcs.families import family
from fcs.families.tiny_flux import build_tiny_flux
from fcs.families.tiny_sd3 import build_tiny_sd3
from fcs.families.tiny_sdxl import build_tiny_sdxl
from fcs.oracles import ORACLES, load_oracle
from fcs.publish import publish_once
from fcs.tiny import build_tiny_clip_vision, build_tiny_pixel, build_tiny_sd, build_tiny_sd_v

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


BUILT: dict[str, Callable[[Path], object]] = {  # name -> builder writing a random-weight model folder there
    "tiny": build_tiny_sd, "tiny-v": build_tiny_sd_v, "tiny-pixel": build_tiny_pixel,  # tests, --smoke, demos
    "tiny-sdxl": build_tiny_sdxl, "tiny-sd3": build_tiny_sd3, "tiny-flux": build_tiny_flux,
}
BUILT_DONE = "model_index.json"  # the file a complete built-in model folder has
SHIPPED = {"photo": Path(__file__).parent / "models" / "photo"}  # trained, committed with the package
BUILTIN = (*BUILT, *SHIPPED, *ORACLES)
TINY_CLIP = "tiny-clip"  # built-in random-weight CLIP vision model for style jobs (tests, --smoke)


def builtin_models() -> list[dict]:
    """Each built-in name: what it is, where it lives and whether its files are there."""
    shipped = [{"name": n, "kind": "trained, shipped with fcs", "path": str(p),
                "present": (p / "model_index.json").exists()} for n, p in SHIPPED.items()]
    built = [{"name": n, "kind": "random weights, written on first use", "path": str(cache_dir() / n),
              "present": (cache_dir() / n / BUILT_DONE).exists()} for n in BUILT]
    oracles = [{"name": n, "kind": "analytic prior with an exact posterior", "path": "fcs/oracles", "present": True}
               for n in ORACLES]
    return shipped + built + oracles


def cache_dir() -> Path:
    """Where built-in models are written: $FCS_CACHE or ~/.cache/fcs."""
    return Path(os.environ.get("FCS_CACHE", Path.home() / ".cache" / "fcs"))


def resolve_model(model: str | Path) -> str:
    """Map a built-in name to its folder: 'photo' (trained, shipped in ``fcs/models``) as it is,
    'tiny', 'tiny-v', 'tiny-pixel' (random weights) written on first use; other values pass through
    (hub id or local path)."""
    name = str(model)
    if name in ORACLES:  # no folder: built from fcs/oracles/fitted.json
        return name
    if name in SHIPPED:
        return str(SHIPPED[name])
    if name not in BUILT:
        return str(Path(name).resolve()) if Path(name).exists() else name
    write_builtin(name)
    return str(cache_dir() / name)


def write_builtin(name: str) -> bool:
    """Write the random-weight built-in ``name`` (:data:`BUILT`) to ``cache_dir() / name`` unless it is
    there, published whole (:func:`fcs.publish.publish_once`: concurrent processes build it once and
    never see a partial folder). True when this call wrote it."""
    return publish_once(cache_dir() / name, BUILT[name], BUILT_DONE)


def resolve_clip(model: str) -> str:
    """Map 'tiny-clip' to its folder, written on first use as :func:`write_builtin` writes the built-in
    models; hub ids and local folders pass through."""
    if model != TINY_CLIP:
        return model
    path = cache_dir() / TINY_CLIP
    publish_once(path, build_tiny_clip_vision, "config.json")
    return str(path)


@contextlib.contextmanager
def _without_torchvision_notice() -> Iterator[None]:
    """Drops transformers' notice that it falls back to PIL image processors without torchvision
    (torchvision is not a dependency by design), while one pipeline loads: no filter outlives the call."""
    logger = logging.getLogger("transformers.utils.import_utils")
    logger.addFilter(_not_torchvision_notice)
    try:
        yield
    finally:
        logger.removeFilter(_not_torchvision_notice)


def _not_torchvision_notice(record: logging.LogRecord) -> bool:
    return "requires torchvision" not in record.getMessage()


def model_folder(model: str | Path) -> Path | None:
    """The local folder of ``model`` without writing anything: a shipped model's or an existing local
    path's; None for hub ids, oracles and the random-weight built-ins (written on first use)."""
    name = str(model)
    if name in SHIPPED:
        return SHIPPED[name]
    if name in ORACLES or name in BUILT:
        return None
    return Path(name) if Path(name).is_dir() else None


def load_denoiser(
    model: str | Path,
    device: str | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    guidance_scale: float = 1.0,
) -> Denoiser:
    """Load ``model`` (a hub id such as ``stable-diffusion-v1-5/stable-diffusion-v1-5``, a local
    folder in diffusers layout, or a built-in name, :data:`BUILTIN`) through
    ``DiffusionPipeline.from_pretrained`` with safetensors only; the family (:data:`fcs.families.FAMILIES`)
    follows from ``model_index.json``'s ``_class_name``. The oracles (analytic priors) load from
    ``fcs/oracles`` (CPU, float32).

    Latent models (with a ``vae``) and pixel-space ``UNet2DModel`` checkpoints both work; every
    part is loaded in ``dtype`` ('auto': fp16 on CUDA, fp32 elsewhere).
    """
    from diffusers import DiffusionPipeline

    if str(model) in ORACLES:
        return load_oracle(str(model))
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    source = resolve_model(model)
    log.info("loading %s on %s as %s", source, device, torch_dtype)
    try:
        index = DiffusionPipeline.load_config(source)
        denoiser_class = family(str(index.get("_class_name", "")))
        is_sd = "safety_checker" in index or index.get("_class_name") == "StableDiffusionPipeline"
        extra = {"safety_checker": None, "requires_safety_checker": False} if is_sd else {}
        with _without_torchvision_notice():
            pipe = DiffusionPipeline.from_pretrained(source, dtype=torch_dtype, use_safetensors=True, **extra)
    except OSError as exc:
        raise OSError(
            f"cannot load model {str(model)!r}: {str(exc).splitlines()[0]} "
            f"(give a local diffusers folder, a reachable hub id, or a built-in name: {', '.join(BUILTIN)})"
        ) from exc
    return denoiser_class.from_pipe(pipe, guidance_scale=guidance_scale, name=str(model)).to(device)
