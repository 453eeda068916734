"""Tasks on arrays: uint8 images (and masks) in, one :class:`TaskResult` per item out.

One module per task, each with one function of one signature::

    run(denoiser, items: Items, config: SamplerConfig = <the task's defaults>, *, <options>) -> list[TaskResult]

The options are keyword-only (e.g. ``scale=`` for superres, ``clip=`` for style), so every task is
called the same way, by a notebook as by the pipeline's registry (``pipeline/tasks.py``)::

    from fcs.tasks import Items, inpaint, superres
    restored = inpaint.run(den, Items(images, masks), config)          # prompts '', seeds 0, 1, ...
    upscaled = superres.run(den, Items(low_res, seeds=[7]), scale=4)

    task      module     reads                               options
    inpaint   inpaint    images + masks (1 = regenerate)     -
    superres  superres   images (low resolution)             scale, variant
    style     style      images = style references, prompts  clip (a loaded CLIPVisionModel), size
    outpaint  outpaint   images                              pad
    layers    layers     images + masks (rough object parts) rounds, samples

Adding a task: its module here with ``run`` of this signature, an entry in ``pipeline.tasks.TASKS``
and its tests (CONTRIBUTING.md).
"""

from fcs.tasks import inpaint, layers, outpaint, style, superres
from fcs.tasks.items import Items, TaskResult

__all__ = ["Items", "TaskResult", "inpaint", "layers", "outpaint", "style", "superres"]
