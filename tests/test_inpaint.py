"""The inpainting task end to end on arrays and through the diffusers-style pipeline class
(issue 2, items 5 and 6): kept pixels, any size, seeds, v-prediction and pixel-space models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fcs
from fcs.tasks.inpaint import check_pair

FAST = fcs.SamplerConfig(steps=2, newton_steps=1)


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB array with structure (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([yy * 255 / height, xx * 255 / width, (yy + xx) * 127 / (height + width)], -1)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def _hole(height: int, width: int, soft: bool = False) -> np.ndarray:
    """Float (H, W) mask, 1 = regenerate: a rectangle, optionally with a soft ramp on its left."""
    mask = np.zeros((height, width))
    mask[height // 4 : 3 * height // 4, width // 3 : 5 * width // 6] = 1.0
    if soft:
        mask[height // 4 : 3 * height // 4, width // 3 - 4 : width // 3] = np.linspace(0.2, 0.8, 4)
    return mask


@pytest.mark.parametrize("size", [(37, 50), (64, 64), (45, 33)])
@pytest.mark.parametrize("soft", [False, True])
def test_kept_pixels_are_bit_identical_and_size_round_trips(sd, size, soft):
    """Acceptance 5: with compositing on (the default), pixels with mask == 0 are the input's bits,
    and sizes that are not multiples of 8 (or of the UNet's 16) come back at the original size."""
    h, w = size
    image, mask = _photo(h, w), _hole(h, w, soft)
    (result,) = fcs.inpaint(sd, fcs.Items([image], [mask], seeds=[0]), FAST)
    assert result.error is None
    assert result.image.shape == (h, w, 3) and result.image.dtype == np.uint8
    kept = mask == 0
    np.testing.assert_array_equal(result.image[kept], image[kept])
    assert (result.image[mask == 1] != image[mask == 1]).any()  # the hole was regenerated


def test_without_compositing_kept_pixels_come_from_the_model(sd):
    """The composite is what keeps pixels exact: switched off, the decoder's output shows through."""
    image, mask = _photo(32, 48), _hole(32, 48)
    (result,) = fcs.inpaint(sd, fcs.Items([image], [mask], seeds=[0]),
                            fcs.SamplerConfig(steps=2, newton_steps=1, composite=False))
    assert result.image.shape == image.shape
    assert (result.image[mask == 0] != image[mask == 0]).any()


def test_same_seed_same_output_other_seed_other_output(sd):
    """Acceptance 6a."""
    image, mask = _photo(32, 48), _hole(32, 48)
    first = fcs.inpaint(sd, fcs.Items([image], [mask], seeds=[7]), FAST)[0]
    again = fcs.inpaint(sd, fcs.Items([image], [mask], seeds=[7]), FAST)[0]
    other = fcs.inpaint(sd, fcs.Items([image], [mask], seeds=[8]), FAST)[0]
    np.testing.assert_array_equal(first.image, again.image)
    assert first.residual_final == again.residual_final and first.nfe == again.nfe
    assert (first.image != other.image).any()


@pytest.mark.parametrize("name", ["tiny-v", "tiny-pixel"])
def test_v_prediction_and_pixel_space_models_run_end_to_end(name, fcs_cache, device, monkeypatch):
    """Acceptance 6b: the built-in names load through the same from_pretrained path and inpaint a
    non-multiple-of-8 image; Newton lowers the residual compared with the first x̂0."""
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    denoiser = fcs.load_denoiser(name, device=device, dtype="float32")
    if name == "tiny-v":
        assert denoiser.prediction_type == "v_prediction" and denoiser.is_latent
    else:
        assert not denoiser.is_latent and not denoiser.encode_prompt([""]).tensors
    image, mask = _photo(30, 42), _hole(30, 42)
    results = fcs.inpaint(denoiser, fcs.Items([image, image], [mask, mask], seeds=[0, 1]),
                          fcs.SamplerConfig(steps=3, newton_steps=2))
    for result in results:
        assert result.error is None and result.image.shape == (30, 42, 3)
        np.testing.assert_array_equal(result.image[mask == 0], image[mask == 0])
        assert np.isfinite(result.residual_final) and result.residual_final < result.residual_init
        assert result.nfe == 3 * (1 + 2 * 2)
    assert (results[0].image != results[1].image).any()


def test_v_prediction_tweedie(sd_v):
    """x̂0 = √ᾱ x_t − √(1−ᾱ) v and ε = √ᾱ v + √(1−ᾱ) x_t: x_t = √ᾱ x̂0 + √(1−ᾱ) ε holds."""
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0)).to(sd_v.device)
    t = 500
    with torch.no_grad():
        eps, x0 = sd_v.predict(x, t, sd_v.encode_prompt(["", ""]))
    alpha, sigma = sd_v.coefficients(t)
    assert abs(alpha**2 - float(sd_v.scheduler.alphas_cumprod[t])) < 1e-12 and abs(alpha**2 + sigma**2 - 1) < 1e-12
    torch.testing.assert_close(alpha * x0 + sigma * eps, x, rtol=0, atol=1e-5)


def test_other_samplers_through_inpaint(sd):
    image, mask = _photo(32, 32), _hole(32, 32)
    for method in ("dps", "replacement", "ddim"):
        (result,) = fcs.inpaint(sd, fcs.Items([image], [mask], seeds=[0]), fcs.SamplerConfig(method=method, steps=2))
        assert result.error is None and result.image.shape == image.shape and result.nfe == 2
        np.testing.assert_array_equal(result.image[mask == 0], image[mask == 0])


def test_inpaint_reports_per_item_metrics(sd):
    images = [_photo(32, 32, seed=i) for i in range(2)]
    masks = [_hole(32, 32), np.ones((32, 32))]
    results = fcs.inpaint(sd, fcs.Items(images, masks, prompts=["a", ""], seeds=[0, 1]), FAST)
    for result in results:
        assert result.batch_size == 2 and result.sample_s > 0 and result.nfe == FAST.nfe_per_item
    assert results[1].residual_init == 0  # nothing to keep
    assert results[0].residual_init > 0


@pytest.mark.parametrize(
    "image, mask, match",
    [
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9)), "mask is 9x8 but image is 8x8"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8)), r"uint8 \(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8)), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 2.0), r"\[0, 1\]"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), np.nan), "finite"),
    ],
)
def test_bad_pairs_fail_with_the_reason(image, mask, match):
    with pytest.raises(ValueError, match=match):
        check_pair(image, mask)


def test_inpaint_checks_lengths(sd):
    with pytest.raises(ValueError, match="got 1 images but 2 seeds"):
        fcs.inpaint(sd, fcs.Items([_photo(16, 16)], [_hole(16, 16)], seeds=[0, 1]), FAST)


# -- the diffusers-style pipeline class ------------------------------------------------------------
def test_pipeline_returns_pil_images_of_the_input_size(sd):
    pipe = fcs.FastConstrainedInpaintPipeline(sd)
    image = Image.fromarray(_photo(37, 50))
    mask = Image.fromarray((_hole(37, 50) * 255).astype(np.uint8))
    out = pipe(image=image, mask_image=mask, prompt="", num_inference_steps=2, newton_steps=1, seed=3, preset="paper")
    assert isinstance(out, fcs.InpaintOutput) and len(out.images) == 1
    assert out.images[0].size == (50, 37) and out.images[0].mode == "RGB"
    assert out.nfe == [2 * 3]
    kept = np.asarray(mask) == 0
    np.testing.assert_array_equal(np.asarray(out.images[0])[kept], np.asarray(image)[kept])


def test_pipeline_lists_and_seeds_match_inpaint(sd):
    pipe = fcs.FastConstrainedInpaintPipeline(sd)
    images = [_photo(32, 32, seed=i) for i in range(2)]
    masks = [Image.fromarray((_hole(32, 32) * 255).astype(np.uint8))] * 2
    out = pipe(image=[Image.fromarray(x) for x in images], mask_image=masks, num_inference_steps=2, newton_steps=1,
               seed=5, preset="paper")
    direct = fcs.inpaint(sd, fcs.Items(images, [_hole(32, 32)] * 2, seeds=[5, 6]), FAST)
    for got, want in zip(out.images, direct, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want.image)


def test_pipeline_from_an_existing_diffusers_pipeline(model_dirs, device, sd):
    """from_pipe reuses the components of a diffusers SD pipeline: same weights, same output."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model_dirs["tiny"], safety_checker=None,
                                             requires_safety_checker=False).to(device)
    ours = fcs.FastConstrainedInpaintPipeline.from_pipe(pipe)
    assert ours.denoiser.unet is pipe.unet
    image = Image.fromarray(_photo(32, 32))
    mask = Image.fromarray((_hole(32, 32) * 255).astype(np.uint8))
    got = ours(image=image, mask_image=mask, num_inference_steps=2, newton_steps=1)
    want = fcs.FastConstrainedInpaintPipeline(sd)(image=image, mask_image=mask, num_inference_steps=2, newton_steps=1)
    np.testing.assert_array_equal(np.asarray(got.images[0]), np.asarray(want.images[0]))
