"""What every task takes and gives: a batch of :class:`Items` in, one :class:`TaskResult` per item out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Items:
    """A batch of task inputs, one entry per item in every field (lists after construction).

    Args:
        images: uint8 RGB arrays (H, W, 3); sizes may differ between items.
        masks: float32 arrays (H, W) in [0, 1] (white = 1), for the tasks that read a mask (inpaint:
            1 = regenerate; layers: 1 = rough object region); None = no masks (an item's entry may
            also be None where its task ignores masks).
        prompts: one text per item; None = '' (unconditional) for every item.
        seeds: one integer per item; None = 0, 1, ..., n − 1.

    ``Items(images, masks)`` is enough for inpainting; ``Items(images, prompts=[...], seeds=[...])``
    for a task without masks. Raises ValueError when a given field's length differs from the images'.
    """

    images: Sequence[np.ndarray]
    masks: Sequence[np.ndarray | None] | None = None
    prompts: Sequence[str] | None = None
    seeds: Sequence[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        self.images = list(self.images)
        self.masks = [None] * n if self.masks is None else list(self.masks)
        self.prompts = [""] * n if self.prompts is None else list(self.prompts)
        self.seeds = list(range(n)) if self.seeds is None else list(self.seeds)
        lengths = {"masks": len(self.masks), "prompts": len(self.prompts), "seeds": len(self.seeds)}
        wrong = {name: k for name, k in lengths.items() if k != n}
        if wrong:
            got = ", ".join(f"{k} {name}" for name, k in wrong.items())
            raise ValueError(f"got {n} images but {got}; give one of each per image (or leave it out for the default)")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: Sequence[int]) -> Items:
        """The items at ``indices``, in that order."""
        return Items(*([field[i] for i in indices] for field in (self.images, self.masks, self.prompts, self.seeds)))

    def need_masks(self, task: str) -> list[np.ndarray]:
        """The masks, or a ValueError saying the task needs one per image."""
        missing = sum(m is None for m in self.masks)
        if missing:
            raise ValueError(f"{task} needs a mask per image, {missing} of {len(self)} missing; "
                             "pass Items(images, masks)")
        return self.masks  # type: ignore[return-value]


@dataclass
class TaskResult:
    """One item's outcome of a task (one per input item, in input order); a sampler's own batch output
    is :class:`fcs.samplers.SampleResult`. ``image`` is uint8 (H, W, 3), None on error."""

    image: np.ndarray | None
    nfe: int
    residual_init: float | None
    residual_final: float
    sample_s: float
    batch_size: int
    error: str | None = None
    extra_images: dict | None = None  # uint8 images beyond ``image`` by column name (layers: F, B, α)


def group_by_size(images: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of equal-sized images, grouped, in first-seen order (one sampler call per group)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[:2]), []).append(i)
    return list(groups.values())
