"""The SD3 / SD3.5 family (issue 22) on the tiny offline checkpoint ``tiny-sd3``: our unconstrained
sampler reproduces diffusers' StableDiffusion3Pipeline, and Newton, inpainting and the exact JVP run on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fcs
from fcs.constraints import LatentInpaint
from fcs.families.sd3 import SD3Denoiser
from fcs.samplers.newton import jacobian_direction


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    """The built-in ``tiny-sd3`` written by its registered builder into a fresh $FCS_CACHE."""
    from fcs.loading import resolve_model

    cache = tmp_path_factory.mktemp("fcs-cache-sd3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FCS_CACHE", str(cache))
        return resolve_model("tiny-sd3")


@pytest.fixture(scope="module")
def sd3(sd3_dir, device):
    """The tiny SD3 denoiser loaded by folder through fcs.load_denoiser, fp32. Tests must not mutate it."""
    return fcs.load_denoiser(sd3_dir, device=device, dtype="float32")


def _pipe(folder, device, **components):
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(folder, dtype=torch.float32, **components).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class _Nothing:
    """No constraint: the unconstrained sampler still records a residual."""

    def residual(self, x0):
        return x0.new_zeros(x0.shape[0])


def _rel(a, b):
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)


def test_tiny_sd3_loads_by_name_through_the_registry(sd3_dir, sd3, monkeypatch):
    monkeypatch.setenv("FCS_CACHE", str(Path(sd3_dir).parent))
    by_name = fcs.load_denoiser("tiny-sd3", device="cpu", dtype="float32")
    for d in (sd3, by_name):
        assert isinstance(d, SD3Denoiser) and d.prediction_type == "flow"
        assert (d.channels, d.scale_factor, d.size_multiple, d.is_latent) == (16, 8, 16, True)
    assert sd3.latent_shape(64, 96) == (16, 8, 12)


@pytest.mark.parametrize("case", ["guided, T5", "no guidance, empty prompt", "guided, no T5", "dynamic shift"])
def test_unconstrained_sampler_reproduces_the_diffusers_pipeline(sd3_dir, device, case):
    """Acceptance 1: same weights, x_T and steps; fcs.ddim on the denoiser's own schedule gives the
    pipeline's final latents (output_type="latent") and decoded images within 1e-3 (measured ~1e-6).
    Covers the CLIP-L/CLIP-G/T5 conditioning, CFG, timestep 1000·s, the shift (static and the
    resolution-dependent μ on a non-square image) and the VAE's shift/scaling factors."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    guidance, prompt = {"guided, T5": (4.0, "a red house"), "no guidance, empty prompt": (1.0, ""),
                        "guided, no T5": (3.0, "a cat"), "dynamic shift": (2.0, "a dog")}[case]
    no_t5 = {"text_encoder_3": None, "tokenizer_3": None} if case == "guided, no T5" else {}
    pipe = _pipe(sd3_dir, device, **no_t5)
    height, width, steps = (64, 64, 4) if case != "dynamic shift" else (48, 96, 5)
    if case == "dynamic shift":
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, use_dynamic_shifting=True)
    denoiser = SD3Denoiser.from_pipe(pipe, guidance_scale=guidance)
    noise = torch.randn(2, 16, height // 8, width // 8, generator=torch.Generator().manual_seed(0)).to(device)
    run = dict(prompt=[prompt] * 2, num_inference_steps=steps, height=height, width=width, guidance_scale=guidance)
    with torch.no_grad():
        latents = pipe(**run, latents=noise.clone(), output_type="latent").images
        images = pipe(**run, latents=noise.clone(), output_type="pt").images
    schedule = denoiser.schedule(steps, shape=(16, height // 8, width // 8))
    if case == "dynamic shift":  # μ from the size: the schedule differs from the 64x64 default one
        assert schedule.sigmas != denoiser.schedule(steps).sigmas
        denoiser.encode(torch.zeros(1, 3, height, width, device=device))  # the size of the last encode
        assert denoiser.schedule(steps).sigmas == schedule.sigmas
    torch.testing.assert_close(torch.tensor(schedule.timesteps, dtype=torch.float32), pipe.scheduler.timesteps.cpu())
    result = fcs.ddim(denoiser, _Nothing(), noise, denoiser.encode_prompt([prompt] * 2), steps=schedule)
    with torch.no_grad():
        ours = denoiser.decode(result.x0).clamp(0, 1)
    assert (result.x0 - latents).abs().max() < 1e-3, f"latents: {(result.x0 - latents).abs().max():.3g}"
    assert (ours - images).abs().max() < 1e-3, f"images: {(ours - images).abs().max():.3g}"
    assert latents.abs().max() > 0.1 and images.std() > 1e-3  # not trivially equal


@pytest.mark.parametrize("step", [1, 4, 7])
def test_exact_jvp_matches_the_finite_difference(sd3, make_problem, step):
    """fp32, with guidance: FD J·e at the paper's h vs torch.func.jvp through MMDiT attention (math
    SDPA for that call only), relative error < 1e-2 (measured ~4e-4)."""
    denoiser = sd3.with_guidance(3.0)
    images, masks = make_problem(2, 64, 64, seed=step)
    constraint = LatentInpaint.from_pixels(denoiser, images, masks)
    schedule = denoiser.schedule(8)
    t, (alpha, sigma) = schedule.timesteps[step], denoiser.coefficients(schedule.timesteps[step])
    x = alpha * constraint.target + sigma * torch.randn(constraint.target.shape, generator=torch.Generator()
                                                        .manual_seed(step)).to(constraint.target.device)
    cond = denoiser.encode_prompt(["a cat", "a boat"])
    with torch.no_grad():
        _, x0 = denoiser.predict(x, t, cond)
        e, _ = constraint.error(x0)
        fd = jacobian_direction(denoiser, x, x0, e, t, cond, h=0.005 * schedule.scale(step), jacobian="fd")
    exact = denoiser.jvp(x, e, t, cond)
    assert exact.shape == x.shape and torch.isfinite(exact).all()
    rel = _rel(fd, exact)
    assert (rel < 1e-2).all(), f"FD vs JVP relative error {rel.tolist()}"


def test_newton_latent_inpainting_lowers_the_residual(sd3, make_problem, sample_inpaint):
    images, masks = make_problem(2, 64, 64)
    options = dict(steps=4, prompts=["a cat", "a dog"])
    newton, _ = sample_inpaint(sd3, images, masks, [0, 1], newton_steps=2, **options)
    plain, _ = sample_inpaint(sd3, images, masks, [0, 1], method="ddim", **options)
    assert (newton.nfe == 4 * (1 + 2 * 2)).all() and newton.backward_passes == 0
    # random weights: measured 0.72 vs 1.33 and 0.70 vs 1.37, falling at every step
    assert (newton.residual_final < 0.7 * plain.residual_final).all(), (newton.residual_final, plain.residual_final)
    assert (newton.residuals.diff(dim=1) < 0).all()


def test_newton_batch_of_2_equals_2_single_runs(sd3, make_problem, sample_inpaint):
    """Per-item everything (prompts, guidance, J·e by exact JVP): max abs difference <= 1e-4."""
    denoiser = sd3.with_guidance(2.0)
    images, masks = make_problem(2, 48, 64)
    seeds, prompts = [3, 4], ["a cat", "a house"]
    options = dict(steps=2, newton_steps=1, jacobian="jvp")
    batch, batch_images = sample_inpaint(denoiser, images, masks, seeds, prompts=prompts, **options)
    for i in range(2):
        single, single_images = sample_inpaint(denoiser, images[i : i + 1], masks[i : i + 1], seeds[i : i + 1],
                                               prompts=prompts[i : i + 1], **options)
        assert (batch.x0[i] - single.x0[0]).abs().max() <= 1e-4
        assert (batch_images[i] - single_images[0]).abs().max() <= 1e-4
        assert torch.equal(batch.nfe[i : i + 1], single.nfe)


def test_inpaint_end_to_end_on_a_non_multiple_size(sd3):
    """fcs.inpaint pads 37x50 to the family's 16-pixel grid, regenerates the hole and keeps every
    other pixel bit for bit."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    mask = np.zeros((37, 50))
    mask[10:28, 15:40] = 1
    results = fcs.inpaint(sd3, fcs.Items([image, image], [mask, mask], prompts=["a cat", ""], seeds=[0, 1]),
                          fcs.SamplerConfig(steps=2, newton_steps=1, guidance_scale=2.0))
    for result in results:
        assert result.error is None and result.image.shape == (37, 50, 3) and result.nfe == 2 * 3
        np.testing.assert_array_equal(result.image[mask == 0], image[mask == 0])
        assert (result.image[mask == 1] != image[mask == 1]).any()
        assert result.residual_final < result.residual_init


def test_prompts_are_encoded_once_and_text_encoders_can_be_freed(sd3_dir, device):
    pipe = _pipe(sd3_dir, device)
    denoiser = SD3Denoiser.from_pipe(pipe, guidance_scale=2.0)
    calls = []
    encode = pipe.encode_prompt
    pipe.encode_prompt = lambda *a, **k: calls.append(k["prompt"]) or encode(*a, **k)
    first = denoiser.encode_prompt(["a cat", "a cat", "a dog"])
    again = denoiser.with_guidance(4.0).encode_prompt(["a dog", "a cat"])  # views share the cache
    assert calls == [["a cat", "a dog"]]
    assert first["encoder_hidden_states"].shape == (3, 16 + 256, 64) and first["pooled_projections"].shape == (3, 64)
    torch.testing.assert_close(again["encoder_hidden_states"], first["encoder_hidden_states"][[2, 0]])
    x = torch.randn(1, 16, 4, 4, device=device)
    with torch.no_grad():
        before = denoiser.model_output(x, 500.0, denoiser.encode_prompt(["a boat"]))
        denoiser.free_text_encoders(["a boat"])
        assert pipe.text_encoder is None and pipe.text_encoder_2 is None and pipe.text_encoder_3 is None
        torch.testing.assert_close(denoiser.model_output(x, 500.0, denoiser.encode_prompt(["a boat"])), before)
    with pytest.raises(ValueError, match="text encoders were freed"):
        denoiser.encode_prompt(["something new"])


def test_images_beyond_the_position_embedding_fail_clearly(sd3):
    x = torch.zeros(1, 16, 8, 66, device=sd3.device)  # 528 pixels wide; tiny-sd3 covers 512
    with pytest.raises(ValueError, match="512 pixels a side"):
        sd3.predict(x, 500.0, sd3.encode_prompt([""]))
