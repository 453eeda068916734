"""Contract tests over every sampler in ``fcs.SAMPLERS``: one signature, one return type, honest
NFE, per-item results. Adding a sampler to the registry adds it here."""

from __future__ import annotations

import inspect

import pytest
import torch

import fcs
from fcs.constraints import PixelInpaint

STEPS = 2
SEEDS = [3, 4]
SHARED = ["denoiser", "constraint", "noise", "cond"]
SHARED_KEYWORDS = {"steps": 20, "eta": 0.0, "gens": None, "show_progress": False}


def _options(method: str) -> dict:
    """The options the job config would pass: a SamplerConfig's sampler_options (JVP for Newton so
    that batch invariance can be held to fp32 round-off)."""
    return fcs.SamplerConfig(method=method, steps=STEPS, newton_steps=2, jacobian="jvp").sampler_options()


def _expected_nfe(method: str) -> int:
    return fcs.SamplerConfig(method=method, steps=STEPS, newton_steps=2).nfe_per_item


@pytest.fixture(params=sorted(fcs.SAMPLERS))
def method(request) -> str:
    return request.param


def test_registry_lists_the_four_documented_samplers():
    assert set(fcs.SAMPLERS) >= {"newton", "dps", "replacement", "ddim"}
    for name, sampler in fcs.SAMPLERS.items():
        assert getattr(fcs, name) is sampler


def test_shared_signature(method):
    """k-diffusion style: the same leading parameters and keyword defaults, a SampleResult back."""
    params = inspect.signature(fcs.SAMPLERS[method]).parameters
    positional = [p.name for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == SHARED
    assert params["cond"].default is None
    for name, default in SHARED_KEYWORDS.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].default == default, name
    annotation = inspect.signature(fcs.SAMPLERS[method]).return_annotation
    assert annotation in (fcs.SampleResult, "SampleResult")
    # every option the config hands a sampler is one of its parameters
    inspect.signature(fcs.SAMPLERS[method]).bind_partial(**_options(method))


def test_result_contract(method, sd, make_problem, sample_inpaint, count_unet):
    """x0 with noise's shape, nfe (B,) integers equal to what a UNet hook counts, residuals (B, S+1)."""
    images, masks = make_problem(2, 32, 48)
    with count_unet(sd) as seen:
        result, decoded = sample_inpaint(sd, images, masks, SEEDS, method=method, steps=STEPS, **_options(method))
    assert isinstance(result, fcs.SampleResult)
    assert result.x0.shape == (2, 4, 4, 6) and result.x0.dtype == torch.float32
    assert torch.isfinite(result.x0).all() and torch.isfinite(decoded).all()
    assert decoded.shape == (2, 3, 32, 48)
    assert result.nfe.shape == (2,) and not result.nfe.is_floating_point()
    assert result.nfe.tolist() == [_expected_nfe(method)] * 2
    assert seen.items == int(result.nfe.sum())
    assert result.residuals.shape == (2, STEPS + 1)
    assert torch.isfinite(result.residuals).all() and (result.residuals >= 0).all()
    assert torch.equal(result.residual_init, result.residuals[:, 0])
    assert torch.equal(result.residual_final, result.residuals[:, -1])
    assert result.backward_passes == (STEPS if method == "dps" else 0) == seen.backward


def test_final_residual_matches_the_returned_x0(method, sd, make_problem):
    """The last residual is that of the x0 the sampler returns (the metric users see)."""
    images, masks = make_problem(2, 32, 32)
    constraint = fcs.constraints.LatentInpaint.from_pixels(sd, images, masks)
    gens = fcs.noise.generators(SEEDS)
    x_T = fcs.noise.randn(constraint.target.shape[1:], gens, sd.device)
    result = fcs.SAMPLERS[method](sd, constraint, x_T, sd.encode_prompt(["", ""]), steps=STEPS, gens=gens,
                                  **_options(method))
    torch.testing.assert_close(result.residual_final, constraint.residual(result.x0).cpu(), rtol=1e-5, atol=1e-6)


def test_batch_of_2_equals_2_single_runs(method, sd, make_problem, sample_inpaint):
    """B items in one batch = B single runs (fp32, 1e-4), with DDIM noise (eta > 0) drawn per item."""
    images, masks = make_problem(2, 32, 48)
    options = dict(method=method, steps=STEPS, **_options(method) | {"eta": 0.5})
    batch, _ = sample_inpaint(sd, images, masks, SEEDS, **options)
    for i in range(2):
        single, _ = sample_inpaint(sd, images[i : i + 1], masks[i : i + 1], [SEEDS[i]], **options)
        torch.testing.assert_close(batch.x0[i : i + 1], single.x0, rtol=0, atol=1e-4)
        torch.testing.assert_close(batch.residuals[i : i + 1], single.residuals, rtol=1e-4, atol=1e-4)
        assert torch.equal(batch.nfe[i : i + 1], single.nfe)


def test_deterministic_and_progress_bar_changes_nothing(method, sd, make_problem, sample_inpaint):
    images, masks = make_problem(1, 32, 32)
    options = dict(method=method, steps=STEPS, **{k: v for k, v in _options(method).items() if k != "jacobian"})
    first, _ = sample_inpaint(sd, images, masks, SEEDS[:1], **options)
    again, _ = sample_inpaint(sd, images, masks, SEEDS[:1], show_progress=True, **options)
    assert torch.equal(first.x0, again.x0) and torch.equal(first.residuals, again.residuals)


def test_samplers_leave_the_global_rng_alone(method, sd, make_problem, sample_inpaint):
    """Per-item generators only: sampling never draws from (or reseeds) torch's global generator."""
    images, masks = make_problem(1, 32, 32)
    state = torch.get_rng_state()
    sample_inpaint(sd, images, masks, SEEDS[:1], method=method, steps=STEPS,
                   **{k: v for k, v in _options(method).items() if k != "jacobian"} | {"eta": 0.5})
    assert torch.equal(torch.get_rng_state(), state)


def test_replacement_rejects_a_constraint_without_known_latents(sd, make_problem):
    images, masks = make_problem(1, 32, 32)
    constraint = PixelInpaint(sd.decode, images.to(sd.device), masks.to(sd.device))
    with pytest.raises(TypeError, match="PixelInpaint"):
        fcs.replacement(sd, constraint, torch.randn(1, 4, 4, 4, device=sd.device), steps=STEPS)


def test_replacement_keeps_the_known_latents_exactly(sd, make_problem, sample_inpaint):
    """Blended-latent inpainting pastes y into the known cells of the final x̂0: zero residual."""
    images, masks = make_problem(2, 32, 32)
    result, _ = sample_inpaint(sd, images, masks, SEEDS, method="replacement", steps=STEPS)
    assert (result.residual_final <= 1e-6).all()


def test_newton_start_stop_resumes_where_it_stopped(sd, make_problem):
    """Branching support: running steps [0, 2) then [2, S) from extras["x_t"] is one full run."""
    images, masks = make_problem(1, 32, 32)
    constraint = fcs.constraints.LatentInpaint.from_pixels(sd, images, masks)
    x_T = fcs.noise.randn(constraint.target.shape[1:], fcs.noise.generators([0]), sd.device)
    cond = sd.encode_prompt([""])
    full = fcs.newton(sd, constraint, x_T, cond, steps=4, newton_steps=1)
    head = fcs.newton(sd, constraint, x_T, cond, steps=4, newton_steps=1, stop=2)
    tail = fcs.newton(sd, constraint, head.extras["x_t"], cond, steps=4, newton_steps=1, start=2)
    torch.testing.assert_close(tail.x0, full.x0, rtol=0, atol=1e-6)
    assert int(head.nfe[0] + tail.nfe[0]) == int(full.nfe[0])
