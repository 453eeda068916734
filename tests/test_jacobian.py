"""J·e, the inexact-Newton direction: finite difference vs exact forward-mode JVP (issue 2, items 1, 7).

J = ∂x̂0/∂x_t. The sampler's default takes J·e by a finite difference with step dt = h / max|e| per
item (one extra UNet forward); ``jacobian="jvp"`` takes it exactly with ``torch.func.jvp``.
"""

from __future__ import annotations

import pytest
import torch

import fcs
from fcs import noise
from fcs.constraints import LatentInpaint
from fcs.samplers.newton import jacobian_direction


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item relative L2 error ‖a − b‖ / ‖b‖, shape (B,)."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)


def _state_at(denoiser, images, masks, t: int, seed: int = 0):
    """x_t = α_t y + σ_t z for the encoded images, its x̂0, the constraint's e and the cond."""
    constraint = LatentInpaint.from_pixels(denoiser, images, masks)
    alpha, sigma = denoiser.coefficients(t)
    z = noise.randn(constraint.target.shape[1:], noise.generators(range(seed, seed + len(images))), denoiser.device)
    x = alpha * constraint.target + sigma * z  # strided like the VAE latents: jvp must cope
    cond = denoiser.encode_prompt([""] * len(images))
    with torch.no_grad():
        _, x0 = denoiser.predict(x, t, cond)
    e, _ = constraint.error(x0)
    return x, x0, e, cond


@pytest.mark.parametrize("t", [900, 500, 100])
def test_finite_difference_matches_exact_jvp_within_1_percent(sd, make_problem, t):
    """Acceptance 1: FD J·e with h = 0.005 vs exact forward-mode JVP (math attention), fp32, < 1%."""
    images, masks = make_problem(2, 64, 64, seed=t)
    x, x0, e, cond = _state_at(sd, images, masks, t)
    assert e.abs().amax() > 0
    with torch.no_grad():
        fd = jacobian_direction(sd, x, x0, e, t, cond, h=0.005, jacobian="fd")
    exact = sd.jvp(x, e, t, cond)
    via_option = jacobian_direction(sd, x, x0, e, t, cond, h=0.005, jacobian="jvp")
    assert fd.shape == exact.shape == x.shape
    assert torch.isfinite(exact).all()
    rel = _rel(fd, exact)
    assert (rel < 0.01).all(), f"t={t}: FD vs JVP relative error {rel.tolist()}"
    torch.testing.assert_close(via_option, exact, rtol=0, atol=0)


def test_exact_jvp_is_the_true_directional_derivative(model_dirs, device, make_problem):
    """The JVP itself is right: it matches a central difference of the same model in float64."""
    den32 = fcs.load_denoiser(model_dirs["tiny"], device=device, dtype="float32")
    den64 = fcs.load_denoiser(model_dirs["tiny"], device=device, dtype=torch.float64)
    images, masks = make_problem(1, 64, 64)
    t = 500
    x, _, e, cond = _state_at(den32, images, masks, t)
    exact = den32.jvp(x, e, t, cond)
    step = 1e-4
    x64, e64, cond64 = x.double(), e.double(), cond.to(torch.float64)
    with torch.no_grad():
        plus = den64.model_output(x64 + step * e64, t, cond64).double()
        minus = den64.model_output(x64 - step * e64, t, cond64).double()
    alpha, sigma = den64.coefficients(t)
    central = (e64 - sigma * (plus - minus) / (2 * step)) / alpha  # J·e for x̂0 = (x − σ ε)/α
    assert _rel(exact.double(), central).max() < 1e-3


def test_jvp_accepts_strided_inputs(sd):
    """Regression: forward-mode group_norm failed on non-contiguous x_t (VAE latents are strided)."""
    x = torch.randn(1, 8, 8, 4, device=sd.device).permute(0, 3, 1, 2)  # (1, 4, 8, 8), not contiguous
    tangent = torch.randn(1, 4, 8, 8, device=sd.device)
    cond = sd.encode_prompt([""])
    out = sd.jvp(x, tangent, 500, cond)
    torch.testing.assert_close(out, sd.jvp(x.contiguous(), tangent, 500, cond))


def test_jvp_samples_match_finite_difference_samples(sd, make_problem, sample_inpaint):
    """Acceptance 7a: Newton with jacobian="jvp" gives the FD samples, fp32. Stated tolerance:
    per-item relative L2 error of the final x̂0 <= 2e-3 and decoded images within 5e-3 (about one
    uint8 level); measured on the tiny model about 3e-4 and 6e-4."""
    images, masks = make_problem(2, 48, 64)
    options = dict(steps=4, newton_steps=3)
    fd, fd_images = sample_inpaint(sd, images, masks, [1, 2], jacobian="fd", **options)
    exact, exact_images = sample_inpaint(sd, images, masks, [1, 2], jacobian="jvp", **options)
    assert _rel(fd.x0, exact.x0).max() <= 2e-3
    assert (fd_images - exact_images).abs().max() <= 5e-3
    torch.testing.assert_close(fd.residuals, exact.residuals, rtol=1e-2, atol=1e-4)
    assert torch.equal(fd.nfe, exact.nfe)


def test_jvp_leaves_the_attention_processors_and_plain_forwards_alone(model_dirs, device):
    """The math SDPA backend is scoped to the JVP call: the UNet keeps its (fused-SDPA) processors and a
    plain forward pass gives the same output after a JVP as before it."""
    den = fcs.load_denoiser(model_dirs["tiny"], device=device, dtype="float32")
    processors = {name: type(p) for name, p in den.unet.attn_processors.items()}
    assert processors and all(p.__name__ == "AttnProcessor2_0" for p in processors.values())
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)).to(device)
    cond = den.encode_prompt([""])
    before = den.predict(x, 500, cond)[1]
    jv = den.jvp(x, torch.ones_like(x), 500, cond)
    assert torch.isfinite(jv).all() and jv.abs().max() > 0
    assert {name: type(p) for name, p in den.unet.attn_processors.items()} == processors
    torch.testing.assert_close(den.predict(x, 500, cond)[1], before, rtol=0, atol=0)
