"""What a diffusers inpainting script passes, turned into what :func:`fcs.inpaint.inpaint` takes.

:class:`fcs.inpaint_pipeline.FastConstrainedInpaintPipeline` accepts the keyword arguments of
diffusers' ``StableDiffusionInpaintPipeline.__call__``. This module holds the translation: images and
masks in any of diffusers' forms (PIL, arrays, tensors, batches, lists), per-image seeds from
``torch.Generator``s, the output formats, and the one table of diffusers arguments we refuse, each with
its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from fcs.images import Source, to_mask_array, to_rgb_array

OUTPUT_TYPES = ("pil", "np", "pt")  # "latent" is refused: see check_call

_NO_LATENT = (
    "output_type='latent' is not available: the returned image is the decoded sample pasted back over "
    "the kept pixels (fcs.images.composite), so no latent holds it; use 'pil', 'np' or 'pt'"
)
_OWN_SCHEDULE = "the sampler runs its own schedule from num_inference_steps (DDIM steps with Newton inner steps)"
_PROMPT_ONLY = "conditioning is computed from the prompt text by the model family (fcs/families); pass prompt"
_NO_HOOKS = "the Newton sampler has no per-step callback hooks; use show_progress=True for progress"

# diffusers inpainting arguments we do not support -> why. None (diffusers' "off") is accepted.
UNSUPPORTED: dict[str, str] = {
    "padding_mask_crop": "no crop-around-the-mask mode: the whole image is sampled (crop it yourself first)",
    "masked_image_latents": "the constraint is built from the pixels of image and mask_image; pass those",
    "latents": "the starting noise x_T comes from seed/generator (fcs.noise); pass generator instead",
    "timesteps": _OWN_SCHEDULE,
    "sigmas": _OWN_SCHEDULE,
    "prompt_embeds": _PROMPT_ONLY,
    "negative_prompt_embeds": _PROMPT_ONLY,
    "pooled_prompt_embeds": _PROMPT_ONLY,
    "negative_pooled_prompt_embeds": _PROMPT_ONLY,
    "clip_skip": _PROMPT_ONLY,
    "prompt_2": _PROMPT_ONLY,
    "negative_prompt_2": _PROMPT_ONLY,
    "ip_adapter_image": "IP-Adapters are not loaded by fcs model families",
    "ip_adapter_image_embeds": "IP-Adapters are not loaded by fcs model families",
    "cross_attention_kwargs": "the denoiser calls its network with fixed arguments (no LoRA scale or attention kwargs)",
    "guidance_rescale": "classifier-free guidance is plain (fcs.denoiser.Denoiser.guidance_scale), no rescale",
    "callback_on_step_end": _NO_HOOKS,
    "callback_on_step_end_tensor_inputs": _NO_HOOKS,
    "callback": _NO_HOOKS,
    "callback_steps": _NO_HOOKS,
    "denoising_start": "strength-like partial denoising is not supported: sampling always starts from noise",
    "denoising_end": "strength-like partial denoising is not supported: sampling always starts from noise",
}


def check_call(kwargs: dict[str, Any], strength: float, negative_prompt: Any, output_type: str,
               num_images_per_prompt: int) -> None:
    """Raise before any model work if the call asks for something this sampler does not do."""
    for name, value in kwargs.items():
        if name not in UNSUPPORTED:
            raise TypeError(f"unexpected keyword argument {name!r} (not a diffusers inpainting argument either)")
        if value is not None:
            raise ValueError(f"{name} is not supported: {UNSUPPORTED[name]}")
    if strength != 1.0:
        raise ValueError(f"strength={strength!r} is not supported: this sampler always starts from pure noise "
                         "and meets the kept pixels through its constraint (strength=1.0); leave strength out")
    prompts = [negative_prompt] if negative_prompt is None or isinstance(negative_prompt, str) else negative_prompt
    if any(p for p in prompts):
        raise ValueError(f"negative_prompt={negative_prompt!r} is not supported: classifier-free guidance contrasts "
                         "with the empty prompt, which each model family encodes and caches once (fcs/families); "
                         "leave negative_prompt out")
    if output_type == "latent":
        raise ValueError(_NO_LATENT)
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type={output_type!r}; allowed: {', '.join(map(repr, OUTPUT_TYPES))}")
    if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
        raise ValueError(f"num_images_per_prompt={num_images_per_prompt!r}; expected an integer >= 1")


# -- inputs ------------------------------------------------------------------------------------
def _unit_floats(x: np.ndarray, name: str) -> np.ndarray:
    """A float array in [0, 1]; diffusers reads float inputs with negative values as [-1, 1]."""
    x = np.asarray(x, dtype=np.float64)
    if x.size and x.min() < 0:
        x = (x + 1) / 2
    if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise ValueError(f"{name}: float values must be in [0, 1] (or [-1, 1]); got [{x.min():.3g}, {x.max():.3g}]; "
                         "pass uint8 arrays for 0..255")
    return x


def _items(source: Any, name: str, channels_first: bool) -> list[Any]:
    """One entry per image: lists flattened, batched arrays/tensors split, tensors as (H, W[, C]) arrays."""
    if isinstance(source, (list, tuple)):
        return [item for part in source for item in _items(part, name, channels_first)]
    if isinstance(source, torch.Tensor):
        x = source.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
        if x.ndim == 4 or (x.ndim == 3 and not channels_first):  # (B, C, H, W) images, (B, H, W) masks
            return [item for row in x for item in _items(torch.from_numpy(row), name, channels_first)]
        return [np.moveaxis(x, 0, -1) if x.ndim == 3 else x]
    if isinstance(source, np.ndarray) and (source.ndim == 4 or (name == "mask_image" and source.ndim == 3
                                                                and source.shape[-1] not in (1, 3, 4))):
        return list(source)  # (B, H, W, C) images or masks, (B, H, W) masks
    return [source]


def _rgb(item: Source) -> np.ndarray:
    if isinstance(item, np.ndarray) and item.dtype.kind == "f":
        x = _unit_floats(item, "image")
        x = np.repeat(x, 3, axis=-1) if x.ndim == 3 and x.shape[-1] == 1 else x
        item = np.round(x * 255).astype(np.uint8)
    return to_rgb_array(item)


def _mask(item: Source) -> np.ndarray:
    if isinstance(item, np.ndarray) and item.dtype.kind in "fb":
        x = _unit_floats(item, "mask_image")
        if x.ndim == 2 or x.shape[-1] == 1:
            return x.reshape(x.shape[:2])
        item = np.round(x * 255).astype(np.uint8)  # a colour mask: its luminance, as for PIL masks
    if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[-1] == 1:
        item = item[..., 0]
    return to_mask_array(item)


def _broadcast(items: list, n: int, name: str) -> list:
    if len(items) == n:
        return items
    if len(items) == 1:
        return items * n
    raise ValueError(f"{name}: got {len(items)} entries for {n} images; give one, or one per image")


def batch_inputs(image: Any, mask_image: Any, prompt: str | Sequence[str] | None,
                 per_prompt: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """uint8 RGB (H, W, 3) images, float (H, W) masks in [0, 1] and prompts, one each per output image:
    single entries broadcast to the longest list, then each entry repeated ``per_prompt`` times."""
    if image is None or mask_image is None:
        raise ValueError("image and mask_image are required (mask: white = regenerate, black = keep)")
    images = [_rgb(x) for x in _items(image, "image", channels_first=True)]
    masks = [_mask(x) for x in _items(mask_image, "mask_image", channels_first=False)]
    prompts = [prompt or ""] if prompt is None or isinstance(prompt, str) else list(prompt)
    n = max(len(images), len(masks), len(prompts))
    columns = [_broadcast(items, n, name) for items, name in
               ((images, "image"), (masks, "mask_image"), (prompts, "prompt"))]
    return tuple([x for x in col for _ in range(per_prompt)] for col in columns)  # type: ignore[return-value]


def resize(images: list[np.ndarray], masks: list[np.ndarray], height: int | None, width: int | None,
           multiple: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images and masks resized to height × width (None: each input's own side), which must be
    multiples of the model's ``multiple``."""
    for name, side in (("height", height), ("width", width)):
        if side is not None and (not isinstance(side, int) or side <= 0 or side % multiple):
            raise ValueError(f"{name}={side!r}: must be a positive multiple of {multiple} for this model "
                             f"(denoiser.size_multiple); or None to keep the input's size")
    if height is None and width is None:
        return images, masks
    out_images, out_masks = [], []
    for rgb, mask in zip(images, masks, strict=True):
        size = (width or rgb.shape[1], height or rgb.shape[0])
        out_images.append(np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS)))
        resized = Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
        out_masks.append(np.clip(np.asarray(resized, dtype=np.float64), 0, 1))
    return out_images, out_masks


# -- seeds -------------------------------------------------------------------------------------
def seeds_for(n: int, seed: int | Sequence[int] | None, generator: Any) -> list[int]:
    """One sampler seed per output image: ``seed + i``, a list of seeds, or drawn from ``generator``
    (one torch.Generator drawn n times in turn, or a list of n: same generator state, same seeds)."""
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both (both set the starting noise)")
    if generator is None:
        seeds = [(seed or 0) + i for i in range(n)] if seed is None or isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise ValueError(f"seed: got {len(seeds)} seeds for {n} images; give one int, or one per image")
        return seeds
    gens = list(generator) if isinstance(generator, (list, tuple)) else [generator] * n
    if len(gens) != n:
        raise ValueError(f"generator: got a list of {len(gens)} for {n} images (inputs × num_images_per_prompt); "
                         "give one generator, or one per image")
    for g in gens:
        if not isinstance(g, torch.Generator):
            raise ValueError(f"generator: expected torch.Generator(s), got {type(g).__name__}")
    return [int(torch.randint(0, 2**62, (), generator=g, device=g.device)) for g in gens]


# -- outputs -----------------------------------------------------------------------------------
def format_images(images: list[np.ndarray], output_type: str) -> list[Image.Image] | np.ndarray | torch.Tensor:
    """uint8 (H, W, 3) images as diffusers returns them: PIL list, float (N, H, W, 3) array in [0, 1]
    ('np'), or float (N, 3, H, W) tensor in [0, 1] ('pt')."""
    if output_type == "pil":
        return [Image.fromarray(x) for x in images]
    if len({x.shape for x in images}) > 1:
        raise ValueError(f"output_type={output_type!r} stacks the images into one array, but they differ in size "
                         f"({sorted({x.shape[:2] for x in images})}); use 'pil', or give height and width")
    stacked = np.stack(images).astype(np.float32) / 255
    return stacked if output_type == "np" else torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
