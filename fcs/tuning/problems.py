"""Problems with known answers, made from a user's own items.

    restore    hide a region that is *known* in the item, shaped like the item's own mask (moved onto kept
               pixels), else like another item's mask, else the box and stroke shapes; the sampler's mask
               is the item's own mask plus that region, and only the region is scored
    outpaint   the item's centre, ``pad`` pixels in from every side; the border is scored
    superres   the item downscaled by ``scale`` (the constraint's own antialiased bicubic); all of it is scored

The truth never reaches the sampler: every pixel a problem scores is overwritten in its ``image``
(:data:`HIDDEN`), cut away (outpaint) or averaged away (superres). An item that cannot make a problem
(too small, a mask covering too much) is skipped with its reason, counted by :func:`make_problems`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fcs.masks import make_mask

TASKS = ("restore", "outpaint", "superres")  # the tasks with a ground truth to tune on
NO_TRUTH = {"style": "a style job has no ground truth to score (its output is a new image)",
            "layers": "layer extraction has no ground truth in the input (the layers are unknown)"}
HIDDEN = 0  # the value every hidden pixel gets in a problem's image
MAX_HIDDEN = 0.6  # at most this fraction of an image may be regenerated in a problem (own mask + hidden)
MIN_SCORED = 0.5  # the scored region keeps at least this fraction of the moved mask's area
MIN_SCORED_PIXELS = 16
SHIFT_TRIES = 24  # random placements tried per mask shape
FALLBACK_SHAPES = ("box", "strokes")


@dataclass
class Source:
    """One usable input item: its id, uint8 RGB (H, W, 3), for restore its float mask (H, W) or None, and
    its prompt."""

    id: str
    image: np.ndarray
    mask: np.ndarray | None = None
    prompt: str = ""


@dataclass
class Problem:
    """One problem: ``image`` (and ``mask``, 1 = regenerate) is all the sampler gets; ``truth`` (the
    output-sized original) and ``region`` (bool, the scored pixels) stay with the scorer."""

    id: str
    source: str
    image: np.ndarray
    mask: np.ndarray | None
    truth: np.ndarray
    region: np.ndarray
    shape: str = ""  # where the hidden region's shape came from: own, "other:<id>", box, strokes, border, downscale
    prompt: str = ""


@dataclass
class Problems:
    """The problems made and, per reason, the items that could not make one."""

    problems: list[Problem] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def check_task(task: str) -> None:
    """ValueError in one line for a task the tuner cannot score."""
    if task in NO_TRUTH:
        raise ValueError(f"fcs tune {task}: cannot tune: {NO_TRUTH[task]}; tunable tasks: {', '.join(TASKS)}")
    if task not in TASKS:
        raise ValueError(f"fcs tune: unknown task {task!r}; tunable tasks: {', '.join(TASKS)}")


def make_problems(task: str, sources: Sequence[Source], options: dict, count: int, seed: int = 0,
                  min_side: int = 16) -> Problems:
    """Up to ``count`` problems from ``sources`` (in order, one per item), for ``task`` with its checked
    ``options`` (superres ``scale``, outpaint ``pad``). ``min_side``: the model's smallest side, which
    every sampler input and output must reach."""
    check_task(task)
    out = Problems()
    rng = np.random.default_rng(seed)
    for k, src in enumerate(sources):
        if len(out.problems) >= count:
            break
        try:
            if task == "restore":
                others = [s for s in sources[k + 1:] + sources[:k] if s.mask is not None]
                problem = _restore(src, others, rng, min_side, FALLBACK_SHAPES[k % 2:] + FALLBACK_SHAPES[:k % 2])
            elif task == "outpaint":
                problem = _outpaint(src, int(options["pad"]), min_side)
            else:
                problem = _superres(src, int(options["scale"]), min_side)
        except _Skip as reason:
            out.skipped[str(reason)] += 1
            continue
        problem.prompt = src.prompt
        out.problems.append(problem)
    return out


class _Skip(Exception):
    """An item that cannot make a problem; the message is the reason, counted."""


def _restore(src: Source, others: Sequence[Source], rng: np.random.Generator, min_side: int,
             fallback: Sequence[str]) -> Problem:
    h, w = src.image.shape[:2]
    if min(h, w) < min_side:
        raise _Skip(f"smaller than the model's {min_side} pixels per side")
    own = np.zeros((h, w), np.float32) if src.mask is None else src.mask.astype(np.float32)
    unknown = own > 0.5
    if unknown.mean() > MAX_HIDDEN:
        raise _Skip(f"mask covers more than {MAX_HIDDEN:.0%} of the image: too little is known to hide a region")
    shapes = [("own", own)] if unknown.any() else []
    shapes += [(f"other:{o.id}", _resized(o.mask, h, w)) for o in others[:2]]
    shapes += [(kind, make_mask(kind, (h, w), seed=int(rng.integers(2**31))) / 255.0) for kind in fallback]
    for name, shape in shapes:
        placed = _place(shape > 0.5, unknown, rng)
        if placed is not None:
            mask = np.maximum(own, placed.astype(np.float32))
            image = src.image.copy()
            image[mask > 0] = HIDDEN
            return Problem(src.id, src.id, image, mask, src.image, placed & ~unknown, name)
    raise _Skip("no hole shape fits in its known pixels (the mask leaves too little known)")


def _place(shape: np.ndarray, unknown: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """``shape`` moved (wrapping at the edges) to where most of it falls on known pixels: at least
    MIN_SCORED of it and MIN_SCORED_PIXELS, with at most MAX_HIDDEN of the image regenerated; None when
    no try fits."""
    area = int(shape.sum())
    if area < MIN_SCORED_PIXELS:
        return None
    h, w = shape.shape
    best, best_known = None, -1
    for _ in range(SHIFT_TRIES):
        moved = np.roll(shape, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
        known = int((moved & ~unknown).sum())
        if known > best_known and (moved | unknown).mean() <= MAX_HIDDEN:
            best, best_known = moved, known
    if best is None or best_known < max(MIN_SCORED * area, MIN_SCORED_PIXELS):
        return None
    return best


def _resized(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    if mask.shape == (h, w):
        return mask
    img = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.NEAREST)
    return np.asarray(img) / 255.0


def _outpaint(src: Source, pad: int, min_side: int) -> Problem:
    h, w = src.image.shape[:2]
    if min(h, w) - 2 * pad < max(min_side, 8):
        raise _Skip(f"too small for a {pad}-pixel border around a centre of at least {max(min_side, 8)} pixels")
    region = np.ones((h, w), bool)
    region[pad:h - pad, pad:w - pad] = False
    return Problem(src.id, src.id, src.image[pad:h - pad, pad:w - pad].copy(), None, src.image, region, "border")


def _superres(src: Source, scale: int, min_side: int) -> Problem:
    import torch

    from fcs.constraints import downsample
    from fcs.images import rgb_to_tensor, tensor_to_rgb

    h, w = (side // scale * scale for side in src.image.shape[:2])
    if min(h, w) < max(min_side, 2 * scale):
        raise _Skip(f"too small to downscale by {scale} and keep the model's {min_side} pixels per side")
    truth = np.ascontiguousarray(src.image[:h, :w])
    with torch.no_grad():
        low = tensor_to_rgb(downsample(rgb_to_tensor(truth)[None], scale)[0])
    return Problem(src.id, src.id, low, None, truth, np.ones((h, w), bool), "downscale")
