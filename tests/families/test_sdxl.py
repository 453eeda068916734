"""SDXL (issue 22): the tiny SDXL checkpoint through fcs's unchanged samplers.

Acceptance: our unconstrained sampler reproduces ``StableDiffusionXLPipeline``'s own output on the
same weights, noise and timesteps (both with the checkpoint's Euler scheduler, whose last step to
σ = 0 lands on x̂0, and with DDIM with ``set_alpha_to_one``), so the two text encoders, pooled
embeddings, time ids, guidance and VAE normalisation are wired as diffusers wires them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fcs
from fcs import noise
from fcs.constraints import LatentInpaint
from fcs.families.sdxl import SDXLDenoiser
from fcs.samplers.newton import jacobian_direction

PROMPTS = ["a red house", "a dog on a hill"]


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    from fcs.families.tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="module")
def sdxl(sdxl_dir, device):
    """The tiny SDXL model loaded by its built-in name (fp32); shared, tests must not mutate it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FCS_CACHE", str(sdxl_dir.parent))
        return fcs.load_denoiser("tiny-sdxl", device=device, dtype="float32")


@pytest.fixture(scope="module")
def pipe(sdxl_dir, device):
    """diffusers' own pipeline on the same folder."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir, add_watermarker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unconstrained(shape, device) -> LatentInpaint:
    """A constraint that plain DDIM ignores (it only records residuals)."""
    return LatentInpaint(torch.zeros(shape, device=device), torch.ones(shape[0], 1, *shape[2:], device=device))


def test_loads_by_family(sdxl, sdxl_dir):
    """model_index.json's StableDiffusionXLPipeline picks SDXLDenoiser; the folder has SDXL's parts."""
    assert isinstance(sdxl, SDXLDenoiser) and sdxl.name == "tiny-sdxl"
    assert sdxl.unet.config.addition_embed_type == "text_time"
    assert type(sdxl.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert sdxl.pipe.text_encoder_2.config.projection_dim == 32
    assert (sdxl.scale_factor, sdxl.size_multiple, sdxl.channels) == (8, 16, 4)
    assert sdxl.latent_shape(64, 96) == (4, 8, 12)
    assert (sdxl_dir / "tokenizer_2" / "vocab.json").exists()


@pytest.mark.parametrize("scheduler", ["euler", "ddim"])
@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_unconstrained_sampler_reproduces_the_diffusers_pipeline(sdxl, pipe, scheduler, guidance):
    """Acceptance 1: fcs.ddim == StableDiffusionXLPipeline (same weights, x_T, timesteps) within 1e-3,
    final latents and decoded images, two prompts, a non-square image (time ids from x's shape)."""
    from diffusers import DDIMScheduler

    steps, height, width = 4, 64, 96
    base = pipe.scheduler
    if scheduler == "ddim":  # the last DDIM step lands on x̂0 only with set_alpha_to_one
        pipe.scheduler = DDIMScheduler.from_config(base.config, set_alpha_to_one=True)
    x_T = torch.randn(2, 4, height // 8, width // 8, generator=torch.Generator().manual_seed(3)).to(sdxl.device)
    try:
        kwargs = dict(height=height, width=width, num_inference_steps=steps, guidance_scale=guidance)
        theirs = pipe(PROMPTS, latents=x_T.clone(), output_type="latent", **kwargs).images
        theirs_images = pipe(PROMPTS, latents=x_T.clone(), output_type="pt", **kwargs).images
    finally:
        pipe.scheduler = base
    denoiser = sdxl.with_guidance(guidance)
    ours = fcs.ddim(denoiser, _unconstrained(x_T.shape, sdxl.device), x_T, denoiser.encode_prompt(PROMPTS),
                    steps=steps)
    with torch.no_grad():
        ours_images = denoiser.decode(ours.x0).clamp(0, 1)
    assert (ours.x0 - theirs).abs().max() < 1e-3, (ours.x0 - theirs).abs().max()
    assert (ours_images - theirs_images).abs().max() < 1e-3
    assert ours.x0.abs().max() > 0.1  # not trivially zero


def test_prompts_are_encoded_once_and_text_encoders_can_be_freed(sdxl_dir, device, monkeypatch):
    denoiser = fcs.load_denoiser(sdxl_dir, device=device, dtype="float32", guidance_scale=3.0)
    calls = []
    encode = denoiser.pipe.encode_prompt

    def counted(prompts, **kwargs):
        calls.append(prompts)
        return encode(prompts, **kwargs)

    monkeypatch.setattr(denoiser.pipe, "encode_prompt", counted)
    first = denoiser.encode_prompt(["a", "b", "a"])
    again = denoiser.encode_prompt(["b", "a"])
    assert calls == [["a", "b"]]  # distinct prompts, once
    torch.testing.assert_close(again["prompt_embeds"], first["prompt_embeds"][[1, 0]], rtol=0, atol=0)
    assert first["prompt_embeds"].shape == (3, 16, 64) and first["text_embeds"].shape == (3, 32)
    x = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0)).to(denoiser.device)
    with torch.no_grad():
        before = denoiser.predict(x, 501, first)[1]
    denoiser.free_text_encoders(["c"])
    assert denoiser.pipe.text_encoder is None and denoiser.pipe.text_encoder_2 is None
    with torch.no_grad():
        torch.testing.assert_close(denoiser.predict(x, 501, denoiser.encode_prompt(["a", "b", "a"]))[1], before)
    denoiser.encode_prompt(["c", ""])  # encoded before freeing
    with pytest.raises(RuntimeError, match="text encoders were freed"):
        denoiser.encode_prompt(["new prompt"])


def test_micro_conditioning_follows_the_image_size(sdxl):
    """time ids = (H, W, 0, 0, H, W) of x_t's image size, by the pipeline's helper; overridable."""
    ids = sdxl.add_time_ids(64, 96, 32)
    assert ids.tolist() == [[64, 96, 0, 0, 64, 96]]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(sdxl.device)
    cond = sdxl.encode_prompt(["a"])
    view = sdxl.with_guidance(2.0)  # a copy: overriding its size does not touch the shared fixture
    view.original_size = (32, 32)
    with torch.no_grad():
        assert not torch.allclose(view.predict(x, 501, cond)[1], sdxl.with_guidance(2.0).predict(x, 501, cond)[1])
    assert sdxl.original_size is None


def test_fp16_vae_is_kept_in_fp32(sdxl_dir):
    """force_upcast: SDXL's VAE overflows in fp16, so it stays fp32 while the UNet is fp16."""
    denoiser = fcs.load_denoiser(sdxl_dir, device="cpu", dtype="float16")
    assert denoiser.dtype == torch.float16 and denoiser.vae.dtype == torch.float32
    assert denoiser.to(dtype=torch.float16).vae.dtype == torch.float32


def test_newton_inpainting_lowers_the_residual(sdxl, make_problem, sample_inpaint):
    images, masks = make_problem(2, 64, 64)
    options = dict(steps=4, prompts=PROMPTS)
    plain, _ = sample_inpaint(sdxl, images, masks, [0, 1], method="ddim", **options)
    newton, decoded = sample_inpaint(sdxl, images, masks, [0, 1], newton_steps=3, **options)
    assert torch.isfinite(decoded).all() and decoded.shape == images.shape
    assert (newton.residual_final < 0.5 * plain.residual_final).all(), (newton.residual_final, plain.residual_final)
    assert newton.nfe.tolist() == [4 * (1 + 2 * 3)] * 2


def test_newton_batch_of_2_equals_2_single_runs(sdxl, make_problem, sample_inpaint):
    images, masks = make_problem(2, 64, 64, seed=1)
    denoiser = sdxl.with_guidance(2.0)
    options = dict(steps=2, newton_steps=1, jacobian="jvp")  # exact J·e: no FD round-off between batch sizes
    batch, batch_images = sample_inpaint(denoiser, images, masks, [5, 6], prompts=PROMPTS, **options)
    for i in range(2):
        single, single_images = sample_inpaint(denoiser, images[i : i + 1], masks[i : i + 1], [5 + i],
                                               prompts=PROMPTS[i : i + 1], **options)
        assert (batch.x0[i] - single.x0[0]).abs().max() < 1e-4
        assert (batch_images[i] - single_images[0]).abs().max() < 1e-4
        assert batch.nfe[i] == single.nfe[0]


def test_inpaint_end_to_end_on_a_non_multiple_size(sdxl):
    """fcs.inpaint pads 37×50 to the model's multiple of 16 and back; kept pixels are the input's."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    mask = np.zeros((37, 50))
    mask[10:30, 15:40] = 1
    results = fcs.inpaint(sdxl, fcs.Items([image, image], [mask, mask], prompts=PROMPTS, seeds=[0, 1]),
                          fcs.SamplerConfig(steps=3, newton_steps=2, guidance_scale=2.0))
    for result in results:
        assert result.error is None and result.image.shape == (37, 50, 3)
        np.testing.assert_array_equal(result.image[mask == 0], image[mask == 0])
        assert result.residual_final < result.residual_init
    assert (results[0].image != results[1].image).any()


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("t", [901, 501, 101])
def test_exact_jvp_matches_the_finite_difference(sdxl, make_problem, guidance, t):
    """fp32: FD J·e (h = 0.005) vs torch.func.jvp through the UNet (math attention), < 1e-2."""
    denoiser = sdxl.with_guidance(guidance)
    images, masks = make_problem(2, 64, 64, seed=t)
    constraint = LatentInpaint.from_pixels(denoiser, images, masks)
    alpha, sigma = denoiser.coefficients(t)
    x = alpha * constraint.target + sigma * noise.randn((4, 8, 8), noise.generators([0, 1]), denoiser.device)
    cond = denoiser.encode_prompt(PROMPTS)
    with torch.no_grad():
        _, x0 = denoiser.predict(x, t, cond)
        e, _ = constraint.error(x0)
        fd = jacobian_direction(denoiser, x, x0, e, t, cond, h=0.005, jacobian="fd")
    exact = denoiser.jvp(x, e, t, cond)
    rel = (fd - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
    assert (rel < 1e-2).all(), rel
