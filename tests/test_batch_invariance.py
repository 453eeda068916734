"""Batch invariance: every max/normalisation is per item, so a batch of B gives B single runs
(issue 2, item 2). Three items with different images, masks and seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fcs

SEEDS = [11, 22, 33]
OPTIONS = dict(steps=3, newton_steps=2)


def _batch_and_singles(denoiser, images, masks, sample_inpaint, **options):
    batch, batch_images = sample_inpaint(denoiser, images, masks, SEEDS, **options)
    singles = [sample_inpaint(denoiser, images[i : i + 1], masks[i : i + 1], [SEEDS[i]], **options) for i in range(3)]
    single_x0 = torch.cat([r.x0 for r, _ in singles])
    single_images = torch.cat([d for _, d in singles])
    single_nfe = torch.cat([r.nfe for r, _ in singles])
    single_res = torch.cat([r.residuals for r, _ in singles])
    return (batch.x0, batch_images, batch.nfe, batch.residuals), (single_x0, single_images, single_nfe, single_res)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_newton_batch_of_3_equals_3_single_runs(sd, make_problem, sample_inpaint, eta):
    """Acceptance 2, fp32, max abs difference <= 1e-4 on the latents x̂0 and on the decoded images
    (J·e by exact JVP; eta > 0 also draws the DDIM noise per item)."""
    images, masks = make_problem(3, 48, 64)
    batch, single = _batch_and_singles(sd, images, masks, sample_inpaint, jacobian="jvp", eta=eta, **OPTIONS)
    assert torch.equal(batch[2], single[2])
    for name, b, s in zip(("x0", "images", "nfe", "residuals"), batch, single, strict=True):
        assert (b.float() - s.float()).abs().max() <= 1e-4, \
            f"{name}: max abs diff {(b.float() - s.float()).abs().max():.3g}"


def test_newton_fd_batch_within_stated_tolerance(sd, make_problem, sample_inpaint):
    """The default FD path: identical NFE, and x̂0 equal to single runs up to FD-amplified round-off
    (<= 2e-3 abs on latents, <= 5e-4 on images; any mixing of items would give O(1) differences).

    The issue's 1e-4 holds for the exact JVP (test above) but not for FD: batch-size-dependent fp32
    UNet round-off (~1e-5) is divided by dt = h/max|e| (~5e-4); measured ~5e-4 on latents with
    |x0| up to ~10, ~1e-4 on decoded images."""
    images, masks = make_problem(3, 48, 64)
    batch, single = _batch_and_singles(sd, images, masks, sample_inpaint, **OPTIONS)
    assert torch.equal(batch[2], single[2])
    assert (batch[0] - single[0]).abs().max() <= 2e-3
    assert (batch[1] - single[1]).abs().max() <= 5e-4
    torch.testing.assert_close(batch[3], single[3], rtol=1e-3, atol=1e-4)


def test_other_items_in_the_batch_do_not_change_an_item(sd, make_problem, sample_inpaint):
    """Same batch size, different companions: item 0 is unchanged (no round-off excuse here, so the
    FD path is held to 1e-6). Catches any batch-wide max or norm."""
    images, masks = make_problem(3, 48, 64)
    other_images, _ = make_problem(3, 48, 64, seed=5)
    other_images[1:] *= 0.5
    other_images[0] = images[0]
    other_masks = masks.flip(0).clone()
    other_masks[0] = masks[0]
    first, _ = sample_inpaint(sd, images, masks, SEEDS, **OPTIONS)
    second, _ = sample_inpaint(sd, other_images, other_masks, [SEEDS[0], 7, 8], **OPTIONS)
    torch.testing.assert_close(first.x0[0], second.x0[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(first.residuals[0], second.residuals[0], rtol=0, atol=1e-6)


def test_inpaint_batch_equals_single_calls(sd, make_problem, uint8_arrays):
    """Through ``fcs.inpaint``: 3 items (two sizes, so two sampler groups) vs 3 one-item calls."""
    images, masks = make_problem(3, 48, 64)
    arrays = uint8_arrays(images)
    mask_arrays = [m[0].numpy().astype(np.float64) for m in masks]
    arrays[1], mask_arrays[1] = arrays[1][:40, :56], mask_arrays[1][:40, :56]  # a second size group
    config = fcs.SamplerConfig(jacobian="jvp", **OPTIONS)
    batch = fcs.inpaint(sd, fcs.Items(arrays, mask_arrays, seeds=SEEDS), config)
    for i in range(3):
        (single,) = fcs.inpaint(sd, fcs.Items([arrays[i]], [mask_arrays[i]], seeds=[SEEDS[i]]), config)
        assert batch[i].image.shape == arrays[i].shape
        assert np.abs(batch[i].image.astype(int) - single.image.astype(int)).max() <= 1
        assert batch[i].nfe == single.nfe == config.nfe_per_item
        assert batch[i].residual_final == pytest.approx(single.residual_final, rel=1e-4, abs=1e-5)
    assert [r.batch_size for r in batch] == [2, 1, 2]
