"""What each job task means to the pipeline: its options, its sampler defaults, the inputs it needs.

    task      input row                                 output ``image``       options (default)
    restore   image + mask (white = regenerate)         the restored image     -
    superres  image (low resolution; mask ignored)      scale × larger image   scale (4), variant (decoder)
    style     image = style reference, prompt           a generated image      clip_model, size ([512, 512])
    layers    image + mask (white = rough object        the background B       rounds (3), samples (4)
              region; one connected part per object)    + foreground, background, alpha columns

The sampler actor runs a task through its function in ``pipeline.actor.RUNNERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TINY_CLIP = "tiny-clip"  # built-in random-weight CLIP vision model (tests, --smoke)
MAX_REGIONS = 16         # a layers mask with more separate parts is an error row (specks cost a sample each)


@dataclass(frozen=True)
class Task:
    """options: name -> default. sampler: SamplerConfig fields the paper sets for this task (the
    user's values win). mask: rows need a mask. layers: output adds foreground/background/alpha."""

    options: dict
    sampler: dict
    mask: bool
    layers: bool = False


# Sampler defaults as in fcs: superres.SR_DEFAULTS, style.STYLE_DEFAULTS, extract_layers' config (a test checks).
TASKS = {
    "restore": Task({}, {}, mask=True),
    "superres": Task({"scale": 4, "variant": "decoder"}, {"newton_steps": 10, "lr": 0.1}, mask=False),
    "style": Task({"clip_model": DEFAULT_CLIP, "size": [512, 512]}, {"guidance_scale": 3.0}, mask=False),
    "layers": Task({"rounds": 3, "samples": 4}, {"newton_steps": 3}, mask=True, layers=True),
}


def _int_in(low: int, values: tuple = ()) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (not values or value in values)
        return None if ok else (f"one of {', '.join(map(str, values))}" if values else f"an integer >= {low}")
    return check


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in allowed else f"one of {', '.join(map(repr, allowed))}"


def _name(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"a hub id, a local folder, or {TINY_CLIP!r}"


def _size(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 2 and all(_int_in(8)(v) is None and v % 8 == 0 for v in value)
    return None if ok else "[height, width] (or one number for a square), multiples of 8"


CHECKS = {"scale": _int_in(2, (2, 4, 8)), "variant": _one_of("decoder", "encoder"), "clip_model": _name,
          "size": _size, "rounds": _int_in(1), "samples": _int_in(2)}


def check_options(task: str, options: dict | None, max_side: int | None = None) -> dict:
    """The task's options with defaults filled in. Raises ValueError naming ``task_options.<name>``
    for an unknown name or a bad value."""
    spec = TASKS[task]
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ValueError(f"config field 'task_options.{unknown[0]}': not an option of task {task!r} "
                         f"(allowed: {allowed})")
    out = {**spec.options, **options}
    if "size" in out:  # one number = a square; [n] from a command line too
        size = list(out["size"]) if isinstance(out["size"], (list, tuple)) else [out["size"]]
        out["size"] = size * 2 if len(size) == 1 else size
    for name, value in out.items():
        expected = CHECKS[name](value)
        if expected is None and name == "size" and max_side is not None and max(value) > max_side:
            expected = f"sides <= max_side={max_side}"
        if expected:
            raise ValueError(f"config field 'task_options.{name}': got {value!r}, expected {expected}")
    return out


def regions(mask: np.ndarray) -> list[np.ndarray]:
    """A layers mask (H, W) in [0, 1] -> one float32 (H, W) region per connected white part (8-connected,
    mask >= 0.5), largest first."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask >= 0.5, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    return [(labels == k + 1).astype(np.float32) for k in np.argsort(-sizes, kind="stable")]
