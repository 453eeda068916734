"""The demo: held-out real photos with generated masks, the model it runs, and what it shows.

The photos are those the built-in ``photo`` model never saw in training (:data:`fcs.photos.HELD_OUT`),
so the hole PSNR the demo prints measures restoration, not memory.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from fcs.masks import MASK_KINDS, make_mask
from fcs.metrics import psnr
from fcs.photos import HELD_OUT, center_square, load_photo

log = logging.getLogger(__name__)

PHOTOS = HELD_OUT
MASKS = MASK_KINDS[:2]  # the demo's
MODEL = "photo"  # the built-in trained latent model; $FCS_MODEL overrides it
PHOTO_MODEL_SIZE = 128  # the size the photo model was trained at


def demo_model() -> str:
    """$FCS_MODEL (a hub id or folder, e.g. a Stable Diffusion checkpoint), else the built-in ``photo``."""
    return os.environ.get("FCS_MODEL") or MODEL


def build_demo_dataset(folder: str | Path, size: int = PHOTO_MODEL_SIZE, limit: int | None = None) -> Path:
    """Write ``images/<photo>-<mask>.png`` and ``masks/<photo>-<mask>.png`` (8 items) to ``folder``."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    items = [(p, m) for p in PHOTOS for m in MASKS][:limit]
    for k, (photo, mask) in enumerate(items):
        Image.fromarray(center_square(load_photo(photo), size)).save(folder / "images" / f"{photo}-{mask}.png")
        Image.fromarray(make_mask(mask, size, seed=k)).save(folder / "masks" / f"{photo}-{mask}.png")
    log.info("demo dataset: %d photo(s) at %dx%d with generated masks in %s", len(items), size, size, folder)
    return folder


def _load(input_folder: Path, item_id: str) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(input_folder / "images" / f"{item_id}.png") as img, \
            Image.open(input_folder / "masks" / f"{item_id}.png") as mask:
        return np.asarray(img.convert("RGB")), np.asarray(mask.convert("L")) > 127


def _decode(row: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))


def write_previews(input_folder: Path, restored, preview_folder: Path) -> int:
    """Side-by-side PNGs (masked input | restored) for the ok rows of a ``pyarrow.Table`` with id
    and image columns; returns how many were written."""
    preview_folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for row in restored.to_pylist():
        if row["image"] is None:
            continue
        original, hole = _load(input_folder, row["id"])
        holed = np.where(hole[..., None], 128, original).astype(np.uint8)
        Image.fromarray(np.concatenate([holed, _decode(row)], axis=1)).save(preview_folder / f"{row['id']}.png")
        count += 1
    return count


def hole_psnr(input_folder: Path, restored, cfg) -> dict[str, float]:
    """Mean hole PSNR (dB) of the job's restorations and of the replacement baseline, run here on the
    same items, model, seeds and steps: the demo's photos are whole, so the holes' truth is known."""
    from fcs import Items, inpaint, load_denoiser

    rows = [r for r in restored.to_pylist() if r["image"] is not None]
    if not rows:
        return {}
    pairs = [_load(input_folder, r["id"]) for r in rows]
    job = [psnr(img, _decode(r), hole) for r, (img, hole) in zip(rows, pairs, strict=True)]
    den = load_denoiser(cfg.model, device=cfg.device, dtype=cfg.dtype)
    items = Items([p[0] for p in pairs], [p[1].astype(np.float32) for p in pairs], seeds=[r["seed"] for r in rows])
    baseline = inpaint(den, items, replace(cfg.sampler, method="replacement"))
    base = [psnr(img, res.image, hole) for res, (img, hole) in zip(baseline, pairs, strict=True)]
    return {cfg.sampler.method: float(np.mean(job)), "replacement": float(np.mean(base)), "items": len(rows)}
