"""Image and mask I/O: decode any common format to RGB, pad to the model's grid, composite back."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

Source = bytes | str | Path | Image.Image | np.ndarray


def _open_lazy(source: bytes | str | Path) -> Image.Image:
    """PIL's open: reads the header only; the pixels are decoded on ``load``."""
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except Exception as exc:  # PIL raises many types for bad data
        raise ValueError(_reason(exc)) from exc


def strip_addresses(text: str) -> str:
    """``text`` without object addresses (`` at 0x7f...``), so equal failures read the same."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _reason(exc: BaseException) -> str:
    """A stable one-line reason: no object addresses (so equal failures group together)."""
    if isinstance(exc, UnidentifiedImageError):
        return "cannot decode image: not a recognised image format (PNG, JPEG, WebP, TIFF, ...)"
    text = strip_addresses(f"{type(exc).__name__}: {exc}")
    return f"cannot decode image: {text}".splitlines()[0]


def image_size(source: bytes | str | Path) -> tuple[int, int]:
    """(width, height) as stored in the file header (before any EXIF rotation), read without decoding a
    pixel: a decompression bomb costs no memory here. Raises ValueError on unreadable data."""
    img = _open_lazy(source)
    return img.width, img.height


def open_image(source: Source) -> Image.Image:
    """Open bytes, a path, a PIL image or an array; applies EXIF orientation. Raises ValueError
    with the reason on unreadable data."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    img = _open_lazy(source)
    try:
        img.load()
    except Exception as exc:  # PIL raises many types for bad data
        raise ValueError(_reason(exc)) from exc
    return ImageOps.exif_transpose(img)


def _as_float_array(img: Image.Image) -> np.ndarray:
    """(H, W) or (H, W, C) float array in [0, 1]; 16-bit and 32-bit integer modes are rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        return np.clip(arr / 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else arr / 255.0, 0, 1)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float64), 0, 1)
    return np.asarray(img).astype(np.float64) / 255.0


def to_rgb_array(source: Source) -> np.ndarray:
    """Any image as uint8 RGB (H, W, 3). Alpha is composited over white; grey is replicated."""
    img = open_image(source)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if img.mode in ("RGB", "L", "P", "CMYK", "YCbCr", "1"):
        return np.asarray(img.convert("RGB"))
    arr = _as_float_array(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.round(arr[..., :3] * 255).astype(np.uint8)


def to_mask_array(source: Source) -> np.ndarray:
    """A mask as float (H, W) in [0, 1], white (1) = regenerate, black (0) = keep.

    Colour masks use their luminance; an alpha-only mask uses its alpha channel.
    """
    img = open_image(source)
    if img.mode in ("RGBA", "LA") and np.asarray(img.convert("L")).max() == 0:
        return np.asarray(img.getchannel("A")).astype(np.float64) / 255.0
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _as_float_array(img)
    return np.asarray(img.convert("L")).astype(np.float64) / 255.0


def rgb_to_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0


def tensor_to_rgb(x: Tensor) -> np.ndarray:
    """float (3, H, W) in [0, 1] -> uint8 (H, W, 3), clamped and rounded."""
    return (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad (..., H, W) at the bottom/right to multiples of ``multiple`` by edge replication
    (never resizes, so nothing is distorted); crop back with ``x[..., :H, :W]``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    flat = x.reshape(-1, *x.shape[-3:]) if x.dim() >= 3 else x[None, None]
    padded = F.pad(flat, (0, pw, 0, ph), mode="replicate")
    return padded.reshape(*x.shape[:-2], h + ph, w + pw)


def _box_blur_gauss(x: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Separable Gaussian blur of (H, W) or (H, W, C), truncated at ``radius``, zero outside."""
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad)
        x = sum(w * np.take(padded, range(i, i + x.shape[axis]), axis=axis) for i, w in enumerate(taps))
    return x


def seam_offset(original: np.ndarray, generated: np.ndarray, mask: np.ndarray, feather: int) -> np.ndarray:
    """Per-pixel colour offset that makes the generated hole meet the kept pixels without a seam.

    The difference original − generated over the kept pixels (mask 0) is spread into the hole by
    normalised convolution and fades to exactly zero ``2·feather`` pixels inside it. Adding it to the
    generated pixels removes the step at the border without mixing any of the old hole content back in.
    """
    known = (mask == 0).astype(np.float64)
    radius = 2 * feather
    diff = (original.astype(np.float64) - generated.astype(np.float64)) * known[..., None]
    num = _box_blur_gauss(diff, feather, radius)
    den = _box_blur_gauss(known, feather, radius)
    fade = np.clip(2 * den, 0, 1)[..., None]
    return num / np.maximum(den, 1e-12)[..., None] * fade


def composite(original: np.ndarray, generated: np.ndarray, mask: np.ndarray, feather: int = 2) -> np.ndarray:
    """Paste ``original`` back outside the mask. uint8 (H, W, 3) arrays, mask float (H, W) in [0, 1]
    with 1 = regenerate.

    Pixels with mask 0 are bit-identical to ``original``; pixels with mask 1 are fully generated (no old
    hole content leaks back, so thin scratches vanish), shifted by :func:`seam_offset` within
    ``2·feather`` pixels of the border; soft mask values blend linearly. ``feather=0``: hard paste.
    """
    gen = generated.astype(np.float64)
    if feather > 0:
        gen = gen + seam_offset(original, generated, mask, feather)
    weight = mask[..., None]
    blend = np.clip(np.round(original * (1 - weight) + gen * weight), 0, 255).astype(np.uint8)
    return np.where(weight > 0, blend, original)


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 array (H, W) or (H, W, C) -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
