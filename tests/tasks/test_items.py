"""The task input batch: defaults for what a notebook leaves out, one length for every field."""

import numpy as np
import pytest

from fcs.tasks import Items


def _images(n: int) -> list[np.ndarray]:
    return [np.full((4, 6, 3), k, np.uint8) for k in range(n)]


def test_defaults_fill_prompts_seeds_and_masks():
    items = Items(_images(3))
    assert len(items) == 3 and items.prompts == ["", "", ""] and items.seeds == [0, 1, 2]
    assert items.masks == [None, None, None]


def test_lengths_must_match_and_the_error_names_them():
    with pytest.raises(ValueError, match="got 2 images but 1 masks, 3 seeds"):
        Items(_images(2), [np.zeros((4, 6))], seeds=[0, 1, 2])


def test_take_keeps_each_field_aligned():
    masks = [np.full((4, 6), k / 10) for k in range(3)]
    sub = Items(_images(3), masks, prompts=["a", "b", "c"], seeds=[7, 8, 9]).take([2, 0])
    assert [int(x[0, 0, 0]) for x in sub.images] == [2, 0] and sub.prompts == ["c", "a"] and sub.seeds == [9, 7]
    assert [float(m[0, 0]) for m in sub.masks] == [0.2, 0.0]


def test_a_task_that_reads_masks_says_which_are_missing():
    with pytest.raises(ValueError, match="inpaint needs a mask per image, 1 of 2 missing"):
        Items(_images(2), [np.zeros((4, 6)), None]).need_masks("inpaint")
