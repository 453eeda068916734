"""FLUX.1 dev and schnell (issue 22): the family reproduces diffusers' own FluxPipeline on a tiny model,
and Newton, the exact JVP and inpainting work on it."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import fcs
from fcs.constraints import LatentInpaint
from fcs.families.flux import FluxDenoiser
from fcs.families.tiny_flux import build_tiny_flux
from fcs.samplers.newton import jacobian_direction

SEEDS = [3, 4]


@pytest.fixture(scope="module")
def flux_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    return {"dev": build_tiny_flux(root / "dev"), "schnell": build_tiny_flux(root / "schnell", guidance=False)}


@pytest.fixture(scope="module")
def dev(flux_dirs, device):
    return fcs.load_denoiser(flux_dirs["dev"], device=device, dtype="float32", guidance_scale=3.5)


@pytest.fixture(scope="module")
def schnell(flux_dirs, device):
    return fcs.load_denoiser(flux_dirs["schnell"], device=device, dtype="float32")


def _nothing(shape) -> LatentInpaint:
    """A constraint that keeps no cell: the residual trace of an unconstrained run."""
    return LatentInpaint(torch.zeros(1, *shape), torch.zeros(1, 1, *shape[1:]))


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_unconstrained_sampler_reproduces_flux_pipeline(flux_dirs, device, variant, request):
    """Acceptance 1: fcs.ddim with the denoiser's own schedule = diffusers' FluxPipeline (same weights,
    noise, timesteps; dev with its guidance embedding at 3.5) on the final latents and the decoded
    images, within 1e-3 (measured: ~1e-6). The image is not square and the shift is the one of its size."""
    from diffusers import FluxPipeline

    den = request.getfixturevalue(variant)
    pipe = FluxPipeline.from_pretrained(flux_dirs[variant]).to(device)
    pipe.set_progress_bar_config(disable=True)
    prompts, (height, width), steps = ["a red cat", "a house"], (64, 48), 4
    shape = den.latent_shape(height, width)
    assert shape == (16, 8, 6)
    x_T = fcs.noise.randn(shape, fcs.noise.generators(SEEDS), device)
    packed = pipe._pack_latents(x_T, 2, *shape)
    kwargs = dict(height=height, width=width, num_inference_steps=steps, guidance_scale=3.5, latents=packed)
    ref = pipe(prompts, output_type="latent", **kwargs).images
    ref = pipe._unpack_latents(ref, height, width, pipe.vae_scale_factor)
    ref_images = pipe(prompts, output_type="pt", **kwargs).images

    result = fcs.ddim(den, _nothing(shape), x_T, den.encode_prompt(prompts), steps=steps)
    assert result.nfe.tolist() == [steps, steps]
    assert (result.x0 - ref).abs().max() < 1e-3
    with torch.no_grad():
        images = den.decode(result.x0).clamp(0, 1)
    assert (images - ref_images.to(images)).abs().max() < 1e-3
    sigmas = den.schedule(steps, shape=shape).sigmas
    np.testing.assert_allclose(sigmas, pipe.scheduler.sigmas[:-1].numpy(), atol=1e-7)


def test_shift_follows_the_image_size_and_schnell_has_none(dev, schnell):
    """dev's μ grows with the packed sequence length (the pipeline's calculate_shift); without a shape
    the pipeline's default 1024 x 1024 is assumed; schnell's schedule is the plain linspace."""
    small, large = dev.schedule(4, shape=(16, 8, 8)), dev.schedule(4, shape=(16, 128, 128))
    assert dev.schedule(4).sigmas == large.sigmas
    assert all(a < b for a, b in zip(small.sigmas[1:], large.sigmas[1:], strict=True))
    assert small.timesteps[0] == 1000.0 and dev.coefficients(small.timesteps[1]) == (1 - small.sigmas[1],
                                                                                     small.sigmas[1])
    np.testing.assert_allclose(schnell.schedule(4, shape=(16, 8, 8)).sigmas, [1.0, 0.75, 0.5, 0.25])


def test_guidance_embedding_is_used_by_dev_and_ignored_by_schnell(dev, schnell):
    x = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(0)).to(dev.device)
    for den, changes in ((dev, True), (schnell, False)):
        cond = den.encode_prompt(["a"])
        with torch.no_grad():
            a = den.model_output(x, 500.0, cond)
            b = den.with_guidance(1.0).model_output(x, 500.0, cond)
        assert a.shape == x.shape
        assert (not torch.equal(a, b)) == changes


def test_loaded_by_name_and_refuses_a_finetuned_transformer(flux_dirs, tmp_path, monkeypatch):
    """'tiny-flux' is a built-in name; a transformer that takes more channels than packed latents (FLUX
    Fill and the like) is refused with a message naming what to load instead."""
    monkeypatch.setenv("FCS_CACHE", str(tmp_path))
    (tmp_path / "tiny-flux").symlink_to(flux_dirs["dev"], target_is_directory=True)
    den = fcs.load_denoiser("tiny-flux", device="cpu", dtype="float32")
    assert isinstance(den, FluxDenoiser) and den.has_guidance and den.guidance_scale == 1.0
    assert (den.channels, den.scale_factor, den.size_multiple) == (16, 8, 16)
    config = types.SimpleNamespace
    fill = types.SimpleNamespace(transformer=types.SimpleNamespace(config=config(in_channels=384)),
                                 vae=types.SimpleNamespace(config=config(latent_channels=16)))
    with pytest.raises(ValueError, match="Fill.*base FLUX.1"):
        FluxDenoiser(fill)


def test_prompts_encoded_once_and_text_encoders_can_be_freed(flux_dirs):
    den = fcs.load_denoiser(flux_dirs["schnell"], device="cpu", dtype="float32")
    calls = []
    den.pipe.text_encoder_2.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    first = den.encode_prompt(["a", "b", "a"])
    again = den.encode_prompt(["b"])
    assert calls == [2]  # one T5 pass for the two distinct prompts, none for the repeat
    assert first["prompt_embeds"].shape[:2] == (3, den.max_sequence_length)
    assert first["pooled_prompt_embeds"].shape == (3, 32)
    assert torch.equal(first["prompt_embeds"][1], again["prompt_embeds"][0])
    den.free_text_encoders(["c"])
    assert den.pipe.text_encoder is None and den.pipe.text_encoder_2 is None
    den.encode_prompt(["a", "c", ""])  # cached
    with pytest.raises(RuntimeError, match="free_text_encoders"):
        den.encode_prompt(["new"])


def _state(den, images, masks, t, cond):
    constraint = LatentInpaint.from_pixels(den, images, masks)
    alpha, sigma = den.coefficients(t)
    z = fcs.noise.randn(constraint.target.shape[1:], fcs.noise.generators(range(len(images))), den.device)
    x = alpha * constraint.target + sigma * z
    with torch.no_grad():
        _, x0 = den.predict(x, t, cond)
    return x, x0, constraint.error(x0)[0]


@pytest.mark.parametrize("t", [900.0, 100.0])
def test_exact_jvp_matches_finite_difference(dev, make_problem, t):
    """fp32: FD J·e (h = 0.005) vs the exact JVP through diffusers' attention dispatch, < 1 % (measured
    ~0.1 %); the processors' own attention backend is set back after the call."""
    images, masks = make_problem(2, 32, 32, seed=1)
    cond = dev.encode_prompt(["a", "b"])
    x, x0, e = _state(dev, images, masks, t, cond)
    processor = dev.transformer.transformer_blocks[0].attn.processor
    processor._attention_backend = "native"  # as set_attention_backend leaves it
    exact = dev.jvp(x, e, t, cond)
    assert processor._attention_backend == "native"
    del processor._attention_backend
    assert "_attention_backend" not in vars(processor)
    exact_again = dev.jvp(x, e, t, cond)
    assert "_attention_backend" not in vars(processor)
    torch.testing.assert_close(exact, exact_again, rtol=0, atol=0)
    with torch.no_grad():
        fd = jacobian_direction(dev, x, x0, e, t, cond, h=0.005, jacobian="fd")
    rel = (fd - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
    assert (rel < 1e-2).all(), rel.tolist()


def test_bf16_exact_jvp_keeps_the_direction_where_the_papers_fd_step_loses_it(flux_dirs, dev, make_problem):
    """Why ``jacobian="auto"`` picks the JVP in bf16: against the fp32 JVP, bf16's JVP has cosine > 0.999
    (measured 0.9998 against float64) and FD with h = 0.005 about 0.5 (its step drowns in rounding)."""
    bf16 = fcs.load_denoiser(flux_dirs["dev"], device=dev.device, dtype="bfloat16", guidance_scale=3.5)
    images, masks = make_problem(1, 32, 32, seed=2)
    cond, t = dev.encode_prompt(["a"]), 500.0
    x, _, e = _state(dev, images, masks, t, cond)
    reference = dev.jvp(x, e, t, cond)
    with torch.no_grad():
        _, x0 = bf16.predict(x, t, cond)
        fd = jacobian_direction(bf16, x, x0, e, t, cond, h=0.005 * 2**-0.5, jacobian="fd")

    def cos(a):
        return float(torch.nn.functional.cosine_similarity(a.flatten(), reference.flatten(), dim=0))

    assert cos(bf16.jvp(x, e, t, cond)) > 0.999
    assert cos(fd) < 0.9


def test_newton_inpainting_lowers_the_residual(dev, make_problem, sample_inpaint):
    images, masks = make_problem(2, 32, 48)
    newton, _ = sample_inpaint(dev, images, masks, SEEDS, steps=4, newton_steps=3, prompts=["a", "b"])
    ddim, _ = sample_inpaint(dev, images, masks, SEEDS, method="ddim", steps=4, prompts=["a", "b"])
    assert torch.equal(newton.residual_init, ddim.residual_init)
    assert newton.nfe.tolist() == [4 * 7] * 2
    ratio = ddim.residual_final / newton.residual_final
    assert (ratio > 3).all(), ratio.tolist()


def test_newton_batch_of_2_equals_2_single_runs(schnell, make_problem, sample_inpaint):
    images, masks = make_problem(2, 32, 32)
    options = dict(steps=2, newton_steps=2, jacobian="jvp")
    batch, batch_images = sample_inpaint(schnell, images, masks, SEEDS, **options)
    singles = [sample_inpaint(schnell, images[i : i + 1], masks[i : i + 1], [SEEDS[i]], **options) for i in range(2)]
    assert torch.equal(batch.nfe, torch.cat([r.nfe for r, _ in singles]))
    assert (batch.x0 - torch.cat([r.x0 for r, _ in singles])).abs().max() <= 1e-4
    assert (batch_images - torch.cat([d for _, d in singles])).abs().max() <= 1e-4


def test_inpaint_end_to_end_on_a_size_not_a_multiple_of_16(dev):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    mask = np.zeros((37, 50))
    mask[8:30, 10:40] = 1
    (result,) = fcs.inpaint(dev, fcs.Items([image], [mask], prompts=["a photo"], seeds=[0]),
                            fcs.SamplerConfig(steps=2, newton_steps=1))
    assert result.error is None and result.image.shape == (37, 50, 3)
    np.testing.assert_array_equal(result.image[mask == 0], image[mask == 0])
    assert result.nfe == 2 * 3
