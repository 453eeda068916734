"""The demo dataset (real photos from scikit-image with generated masks) and the model it uses."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
MASKS = ("box", "strokes")
SD_REPOS = (
    "stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5", "CompVis/stable-diffusion-v1-4",
    "stabilityai/stable-diffusion-2-1-base", "stabilityai/stable-diffusion-2-base",
)


def make_mask(kind: str, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (size, size) mask, 255 = regenerate: a centred box or random brush strokes."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    if kind == "box":
        draw.rectangle([size * 0.3, size * 0.35, size * 0.7, size * 0.65], fill=255)
    elif kind == "strokes":
        rng = np.random.default_rng(seed)
        for _ in range(4):
            points = [tuple(p) for p in rng.uniform(0.1, 0.9, (4, 2)) * size]
            draw.line(points, fill=255, width=max(2, size // 16), joint="curve")
    else:
        raise ValueError(f"mask kind {kind!r} is not one of {', '.join(MASKS)}")
    return np.asarray(img)


def _photo(name: str, size: int) -> np.ndarray:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS))


def build_demo_dataset(folder: str | Path, size: int = 256, limit: int | None = None) -> Path:
    """Write ``images/<photo>-<mask>.png`` and ``masks/<photo>-<mask>.png`` (8 items) to ``folder``."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    items = [(p, m) for p in PHOTOS for m in MASKS][:limit]
    for k, (photo, mask) in enumerate(items):
        Image.fromarray(_photo(photo, size)).save(folder / "images" / f"{photo}-{mask}.png")
        Image.fromarray(make_mask(mask, size, seed=k)).save(folder / "masks" / f"{photo}-{mask}.png")
    log.info("demo dataset: %d photo(s) at %dx%d with generated masks in %s", len(items), size, size, folder)
    return folder


def find_sd_checkpoint() -> str | None:
    """$FCS_MODEL, else a Stable Diffusion snapshot already in the Hugging Face cache, else None."""
    if os.environ.get("FCS_MODEL"):
        return os.environ["FCS_MODEL"]
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE") or hf_home / "hub")
    for repo in SD_REPOS:
        for snapshot in sorted((hub / f"models--{repo.replace('/', '--')}" / "snapshots").glob("*")):
            if (snapshot / "model_index.json").exists() and list((snapshot / "unet").glob("*.safetensors")):
                return str(snapshot)
    return None


def write_previews(input_folder: Path, restored: "object", preview_folder: Path) -> int:
    """Side-by-side PNGs (masked input | restored) for the ok rows of a ``pyarrow.Table`` with id
    and image columns; returns how many were written."""
    import io

    preview_folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for row in restored.to_pylist():
        if row["image"] is None:
            continue
        original = Image.open(input_folder / "images" / f"{row['id']}.png").convert("RGB")
        mask = Image.open(input_folder / "masks" / f"{row['id']}.png").convert("L")
        holed = Image.composite(Image.new("RGB", original.size, (128, 128, 128)), original, mask)
        out = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        sheet = Image.new("RGB", (original.width * 2, original.height))
        sheet.paste(holed, (0, 0))
        sheet.paste(out, (original.width, 0))
        sheet.save(preview_folder / f"{row['id']}.png")
        count += 1
    return count
