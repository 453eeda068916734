"""Problems made from real items: the truth never reaches the sampler; unusable items are counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcs.constraints import downsample
from fcs.images import rgb_to_tensor, tensor_to_rgb
from fcs.masks import make_mask
from fcs.photos import HELD_OUT, center_square, load_photo
from fcs.tuning import Source, make_problems
from fcs.tuning.problems import HIDDEN, MAX_HIDDEN


@pytest.fixture(scope="module")
def photos() -> list[Source]:
    """Real photos (the demo's held-out ones) with the demo's box and stroke masks."""
    return [Source(f"{p}-{kind}", center_square(load_photo(p), 96), make_mask(kind, 96, seed=i) / 255.0)
            for i, (p, kind) in enumerate((p, k) for p in HELD_OUT for k in ("box", "strokes"))]


def test_restore_hides_known_pixels_shaped_like_the_items_masks(photos):
    made = make_problems("restore", photos, {}, count=8)
    assert len(made.problems) == 8 and not made.skipped
    for p, src in zip(made.problems, photos, strict=True):
        own = src.mask > 0.5
        assert p.region.any() and not (p.region & own).any()  # scored only where the item is known
        assert (p.mask[p.region] == 1).all() and (p.mask[own] == 1).all()  # the sampler regenerates both
        assert (p.image[p.mask > 0] == HIDDEN).all()  # every regenerated pixel is overwritten ...
        assert (p.image[p.mask == 0] == src.image[p.mask == 0]).all()  # ... and the rest is the item's
        assert p.shape == "own" and p.region.sum() >= 0.5 * own.sum()  # the item's own mask, moved
        assert (p.truth == src.image).all() and (p.mask > 0).mean() <= MAX_HIDDEN


def test_the_truth_in_the_hole_cannot_change_what_the_sampler_gets(photos):
    """Two items that differ only where the problem scores give identical sampler inputs."""
    first = make_problems("restore", photos[:1], {}, count=1).problems[0]
    changed = photos[0].image.copy()
    changed[first.region] = 255 - changed[first.region]
    second = make_problems("restore", [Source(photos[0].id, changed, photos[0].mask)], {}, count=1).problems[0]
    assert (first.region == second.region).all() and (first.image == second.image).all()
    assert not (first.truth == second.truth).all()


def test_items_without_masks_get_box_and_stroke_holes(photos):
    made = make_problems("restore", [Source(s.id, s.image) for s in photos[:4]], {}, count=4)
    assert [p.shape for p in made.problems] == ["box", "strokes", "box", "strokes"]
    assert all((p.image[p.region] == HIDDEN).all() for p in made.problems)


def test_outpaint_cuts_the_border_away_and_superres_downscales(photos):
    pad = 16
    (out,) = make_problems("outpaint", photos[:1], {"pad": pad}, count=1).problems
    assert out.image.shape == (96 - 2 * pad, 96 - 2 * pad, 3) and out.mask is None
    assert (out.image == photos[0].image[pad:-pad, pad:-pad]).all() and out.region.sum() == 96 ** 2 - 64 ** 2
    (sr,) = make_problems("superres", photos[:1], {"scale": 4}, count=1).problems
    expected = tensor_to_rgb(downsample(rgb_to_tensor(photos[0].image)[None], 4)[0])
    assert sr.image.shape == (24, 24, 3) and (sr.image == expected).all() and sr.region.all()


def test_unusable_items_are_skipped_and_counted(photos):
    image = photos[0].image
    covered = Source("covered", image, np.ones(image.shape[:2]))
    tiny = Source("tiny", image[:8, :8], np.zeros((8, 8)))
    made = make_problems("restore", [covered, tiny, photos[1]], {}, count=3)
    assert [p.id for p in made.problems] == [photos[1].id]
    assert sum(made.skipped.values()) == 2
    assert any("mask covers more than 60%" in why for why in made.skipped)
    assert any("smaller than the model's 16 pixels" in why for why in made.skipped)
    small = make_problems("outpaint", [Source("s", image[:40, :40])], {"pad": 16}, count=1)
    assert not small.problems and "too small for a 16-pixel border" in next(iter(small.skipped))


def test_tasks_without_a_ground_truth_say_so():
    with pytest.raises(ValueError, match="style.*cannot tune: a style job has no ground truth"):
        make_problems("style", [], {}, count=1)
    with pytest.raises(ValueError, match="layers.*no ground truth"):
        make_problems("layers", [], {}, count=1)


def test_superres_problem_matches_the_constraint_operator(photos):
    """The low-resolution input is exactly what the superres constraint compares against (A(x) = y)."""
    (sr,) = make_problems("superres", photos[:1], {"scale": 2}, count=1).problems
    low = downsample(rgb_to_tensor(sr.truth)[None], 2)
    assert torch.allclose(rgb_to_tensor(sr.image)[None], low, atol=0.5 / 255 + 1e-6)
