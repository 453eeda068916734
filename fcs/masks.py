"""The mask shapes the demo, the tuner and the benchmarks draw: a centred box, brush strokes, a half."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

MASK_KINDS = ("box", "strokes", "half")


def make_mask(kind: str, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """uint8 (H, W) mask, 255 = regenerate: a centred box, random brush strokes, or the bottom half.
    ``size``: one side for a square, or (H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    if kind == "box":
        draw.rectangle([w * 0.3, h * 0.35, w * 0.7, h * 0.65], fill=255)
    elif kind == "strokes":
        rng = np.random.default_rng(seed)
        for _ in range(4):
            points = [tuple(p) for p in rng.uniform(0.1, 0.9, (4, 2)) * (w, h)]
            draw.line(points, fill=255, width=max(2, min(h, w) // 16), joint="curve")
    elif kind == "half":
        draw.rectangle([0, h // 2, w, h], fill=255)
    else:
        raise ValueError(f"mask kind {kind!r} is not one of {', '.join(MASK_KINDS)}")
    return np.asarray(img)
