"""The task registry: everything the pipeline and the CLI know about a task lives in its :class:`Task`.

    task      input row                                 output ``image``       options (default)
    restore   image + mask (white = regenerate)         the restored image     -
    superres  image (low resolution; mask ignored)      scale × larger image   scale (4), variant (decoder)
    style     image = style reference, prompt           a generated image      clip_model, size ([512, 512])
    layers    image + mask (white = rough object        the background B       rounds (3), samples (4)
              region; one connected part per object)    + foreground, background, alpha columns
    outpaint  image                                     image + generated      pad (32)
                                                        border of pad pixels

A task owns its option schema (defaults and checks), its sampler defaults (an ``fcs`` SamplerConfig),
whether rows carry a mask, its per-item checks, its extra output image columns, its ``fcs`` task
function (``fcs.tasks.<name>.run``, one signature for all), how its checked options become that
function's keywords (as they are, unless the task says otherwise: style loads its CLIP model from
``clip_model`` once per actor), and its ``fcs run <task>`` help. The actor, the stages, the job config
and the CLI all read ``TASKS``; adding a task is its ``fcs.tasks`` module plus one entry here (see
CONTRIBUTING.md). Nothing here imports Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fcs.config import SamplerConfig
from fcs.loading import TINY_CLIP
from fcs.presets import with_preset
from fcs.settings import Setting, fail, integer, one_of
from fcs.tasks import inpaint, layers, outpaint, style, superres
from fcs.tasks.layers import LAYERS_DEFAULTS, ROUNDS, SAMPLES, regions
from fcs.tasks.outpaint import DEFAULT_PAD
from fcs.tasks.style import DEFAULT_CLIP, DEFAULT_SIZE, STYLE_DEFAULTS
from fcs.tasks.superres import DEFAULT_SCALE, SCALES, SR_DEFAULTS, VARIANTS
from pipeline.schema import output_schema

MAX_REGIONS = 16  # a layers mask with more separate parts is an error row (specks cost a sample each)


def _same_size(h: int, w: int, options: dict) -> tuple[int, int]:
    return h, w


def _as_given(denoiser: Any, options: dict) -> dict:
    return dict(options)


@dataclass(frozen=True)
class Task:
    """One job task.

    Attributes:
        name: the task's name (``fcs run <name>``, the ``task`` column).
        about: one sentence for ``--help``. examples: command lines for the ``--help`` epilog.
        run: the ``fcs`` task function, ``run(denoiser, items: fcs.tasks.Items, config, **keywords)`` -> one
            ``fcs.tasks.TaskResult`` per item (``fcs.tasks.<name>.run``).
        mask: rows carry a mask. sampler: the task's sampler defaults, an ``fcs`` SamplerConfig.
        options: the task's options. extra_images: output PNG columns beyond ``image``.
        keywords: (denoiser, checked options) -> ``run``'s keyword options, built once per actor (where a
            task loads what an option names, e.g. style's CLIP model); default: the options as they are.
        check_item: (rgb, mask, options) -> None; raises ValueError naming what is wrong with an item.
        output_size: (h, w, options) -> the output's (h, w), checked against ``max_side`` before sampling.
        smoke: options ``--smoke`` sets unless given. demo: offers ``--demo``.
        batched: ``run`` samples its items in one batch (padding a short batch then pays off); False
            for a task that runs items one at a time.
        through_decoder: the constraint reaches x̂0 through the VAE decoder (presets may differ there).
    """

    name: str
    about: str
    examples: str
    run: Callable[..., list]
    mask: bool
    sampler: SamplerConfig = SamplerConfig()
    options: tuple[Setting, ...] = ()
    extra_images: tuple[str, ...] = ()
    keywords: Callable[[Any, dict], dict] = _as_given
    check_item: Callable[[np.ndarray, np.ndarray | None, dict], None] | None = None
    output_size: Callable[[int, int, dict], tuple[int, int]] = _same_size
    smoke: dict = field(default_factory=dict)
    demo: bool = False
    batched: bool = True
    through_decoder: bool = False

    @property
    def schema(self) -> pa.Schema:
        return output_schema(self.extra_images)

    def sampler_config(self, values: dict, preset: str = "paper") -> SamplerConfig:
        """The user's SamplerConfig fields laid over ``preset`` (default: none, the task's own defaults) laid
        over this task's defaults, validated."""
        return with_preset(self.sampler, preset, through_decoder=self.through_decoder, **values)

    def check_options(self, options: dict | None, max_side: int | None = None) -> dict:
        """The options with defaults filled in. Raises ValueError naming ``task_options.<name>`` for
        an unknown name or a bad value."""
        spec = {o.name: o for o in self.options}
        options = dict(options or {})
        unknown = sorted(set(options) - set(spec))
        if unknown:
            raise ValueError(f"config field 'task_options.{unknown[0]}': not an option of task {self.name!r} "
                             f"(allowed: {', '.join(spec) or 'none'})")
        out = {name: opt.validate(options.get(name, opt.default), "task_options.") for name, opt in spec.items()}
        if "size" in out and max_side is not None and max(out["size"]) > max_side:
            fail("task_options.size", out["size"], f"sides <= max_side={max_side}")
        return out


# -- option checks --------------------------------------------------------------------------------
def _model_name(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"a hub id, a local folder, or {TINY_CLIP!r}"


def _size(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 2 and all(integer(8)(v) is None and v % 8 == 0 for v in value)
    return None if ok else "[height, width] (or one number for a square), multiples of 8"


def _square(value: Any) -> Any:
    """One number (or [n] from a command line) means a square."""
    size = list(value) if isinstance(value, (list, tuple)) else [value]
    return size * 2 if len(size) == 1 else size


# -- per-item checks ------------------------------------------------------------------------------
def _mask_not_empty(rgb: np.ndarray, mask: np.ndarray | None, options: dict) -> None:
    if float(mask.max()) <= 0:
        h, w = rgb.shape[:2]
        raise ValueError(f"mask is empty (all black = keep every pixel) for {w}x{h} image; nothing to restore "
                         "(white marks the pixels to regenerate)")


def _object_regions(rgb: np.ndarray, mask: np.ndarray | None, options: dict) -> None:
    parts = len(regions(mask))
    if not parts:
        h, w = rgb.shape[:2]
        raise ValueError(f"mask is empty (no white pixels) for {w}x{h} image; layers need the rough object "
                         "region(s) in white, one connected part per object")
    if parts > MAX_REGIONS:
        raise ValueError(f"mask has {parts} separate white parts, more than {MAX_REGIONS} objects; merge them or "
                         "remove small specks")


# -- keywords: (denoiser, checked options) -> the task function's keyword options -----------------------
def _style_keywords(denoiser, options: dict) -> dict:
    """The style job's CLIP vision model (loaded once per actor) and size, after checking the size fits
    this model's grid (a job fails here, before any row, instead of turning every row into the same
    error row)."""
    from fcs.constraints.style import load_clip_vision
    from fcs.loading import resolve_clip

    grid = denoiser.size_multiple
    if any(side % grid for side in options["size"]):
        raise ValueError(f"config field 'task_options.size': {options['size']} is not a multiple of {grid}, this "
                         f"model's grid; use e.g. {[max(grid, side // grid * grid) for side in options['size']]}")
    clip = load_clip_vision(resolve_clip(options["clip_model"]), denoiser.device, denoiser.dtype)
    return {"clip": clip, "size": tuple(options["size"])}


_REMOTE = "fcs run {task} --input s3://bucket/{src}/ --output s3://bucket/{dst}/{extra} \\\n" \
          "    --model stable-diffusion-v1-5/stable-diffusion-v1-5 --actors 8 --batch-size 4"


def _examples(task: str, src: str, dst: str, extra: str = "", smoke: str = "", demo: bool = False) -> str:
    lines = [_REMOTE.format(task=task, src=src, dst=dst, extra=extra)]
    if demo:
        lines.append(f"fcs run {task} --demo       # held-out photos + generated masks, local Ray, ./demo-output")
    lines.append(f"fcs run {task} --smoke      # one item end to end ({smoke or 'tiny model unless --model'})")
    return "\n".join(lines)


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("restore", mask=True, run=inpaint.run, check_item=_mask_not_empty, demo=True,
         about="Restore the masked regions of a dataset's images on Ray (inexact-Newton sampler) and write one "
               "Parquet row per input id. Input rows: image + mask (white = regenerate).",
         examples=_examples("restore", "damaged", "restored", demo=True)),
    Task("superres", mask=False, run=superres.run, sampler=SR_DEFAULTS, through_decoder=True,
         output_size=lambda h, w, options: (h * options["scale"], w * options["scale"]),
         about="Upscale a dataset's images ×2, ×4 or ×8 on Ray (inexact-Newton sampler under a bicubic "
               "downsampling constraint) and write one Parquet row per input id. Input rows: image (the "
               "low-resolution picture; a mask column is ignored). Sampler defaults: the paper's K=10, lr=0.1.",
         examples=_examples("superres", "low-res", "upscaled", " --scale 4"),
         options=(
             Setting("scale", DEFAULT_SCALE, f"upscaling factor: one of {SCALES}", integer(2, SCALES)),
             Setting("variant", VARIANTS[0], "error vector through the VAE 'decoder' (backward pass, the paper's) or "
                     "'encoder' (VAE forward passes only)", one_of(VARIANTS, quote=True), cli={"choices": VARIANTS}),
         )),
    Task("style", mask=False, run=style.run, keywords=_style_keywords, sampler=STYLE_DEFAULTS,
         output_size=lambda h, w, options: tuple(options["size"]),
         smoke={"clip_model": TINY_CLIP, "size": [64, 64]},
         about="Generate one image per row from its prompt in the style of its reference image on Ray "
               "(inexact-Newton sampler under a CLIP Gram-matrix loss) and write one Parquet row per input id. "
               "Input rows: image = the style reference, prompt.",
         examples=_examples("style", "styles", "styled", " --size 512 512", smoke="tiny model and tiny CLIP"),
         options=(
             Setting("clip_model", DEFAULT_CLIP, f"CLIP vision model: hub id, local folder, or {TINY_CLIP!r} (built-in "
                     "random weights)", _model_name),
             Setting("size", list(DEFAULT_SIZE), "output size: H W, or one number for a square; multiples of the "
                     "model's grid (64 for SD 1.5)", _size, cli={"type": int, "nargs": "+", "metavar": "N"},
                     normalize=_square),
         )),
    Task("layers", mask=True, run=layers.run, check_item=_object_regions, sampler=LAYERS_DEFAULTS, batched=False,
         extra_images=("foreground", "background", "alpha"), smoke={"rounds": 2, "samples": 2},
         about="Split a dataset's images into background, foreground and alpha given rough object regions, on Ray "
               "(EM over constrained-sampler completions), and write one Parquet row per input id. Input rows: "
               "image + mask (white = rough object regions, one connected part per object).",
         examples=_examples("layers", "photos", "layers", " --rounds 3 --samples 4"),
         options=(
             Setting("rounds", ROUNDS, "EM rounds: sample completions, re-estimate alpha", integer(1)),
             Setting("samples", SAMPLES, "completions per layer per round, at least 2", integer(2)),
         )),
    Task("outpaint", mask=False, run=outpaint.run,
         output_size=lambda h, w, options: (h + 2 * options["pad"], w + 2 * options["pad"]),
         about="Extend a dataset's images by a generated border of --pad pixels on every side on Ray (inpainting "
               "of the larger canvas) and write one Parquet row per input id. Input rows: image (a mask column "
               "is ignored).",
         examples=_examples("outpaint", "photos", "extended", " --pad 64"),
         options=(Setting("pad", DEFAULT_PAD, "pixels added on each side", integer(1)),)),
)}
