"""Contract tests from one registry over every constraint (deepinv style): zero residual and zero
error at a solution, error with x̂0's shape, finite, pointing toward the constraint, and B items in
one batch = B single runs. Adding a constraint = adding one ``Case`` to ``CASES``."""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

import fcs
from fcs.constraints import (
    Constraint,
    EncoderSuperResolution,
    ImageLoss,
    LatentInpaint,
    PixelInpaint,
    ProjectedConstraint,
    Style,
    SuperResolution,
    downsample,
)

B = 3


@dataclass
class Case:
    """A constraint built from per-item data that a known x̂0 satisfies.

    data(den, x0) -> dict of per-item tensors (first dim B) that ``x0`` satisfies;
    build(den, data) -> the Constraint; solution(constraint, x0) -> the point of zero residual
    (default: x0 itself). ``model``: the denoiser fixture. ``exact_error``: the error vector is
    checked to vanish at the solution and to descend; both need E ≈ D⁻¹, which a random-weight VAE
    is not (encoder round trips there are only checked for shape, finiteness and batch invariance;
    the trained ``photo_model`` cases check them with a real VAE). ``batch_atol``: how far batch and
    single-item errors (normalised to max 1) may differ.
    """

    name: str
    cls: type
    data: Callable[..., dict]
    build: Callable[..., Constraint]
    solution: Callable[[Constraint, Tensor], Tensor] = lambda constraint, x0: x0
    model: str = "sd"
    exact_error: bool = True
    batch_atol: float = 1e-5  # |error| tolerance for batch vs single items (fp32 round-off of batched decodes)


def _seeded(shape, seed: int) -> Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _mask(b: int, size: int = 32) -> Tensor:
    """(B, 1, H, W) masks in [0, 1], white = regenerate: a per-item hole, a soft band, kept pixels."""
    mask = torch.zeros(b, 1, size, size)
    for i in range(b):
        mask[i, :, (i * size) // 8 : size // 2 + (i * size) // 8, size // 4 :] = 1
        mask[i, :, -2:, : size // 2] = 0.5
    return mask


def _charbonnier(targets: Tensor, eps: float = 1e-2) -> Callable[[Tensor], Tensor]:
    """A non-linear loss: mean of sqrt((img − target)² + ε²) − ε per item; zero with zero gradient
    at the target."""
    return lambda images: ((images - targets).pow(2) + eps**2).sqrt().sub(eps).flatten(1).mean(1)


def _towards(targets: Tensor) -> dict:
    """A pixel projection halfway toward ``targets`` (B, 3, H, W), with an RMS residual."""
    return dict(project=lambda img: img + 0.5 * (targets - img),
                residual_fn=lambda img: (img - targets).pow(2).flatten(1).mean(1).add(1e-12).sqrt())


@functools.cache
def _tiny_clip(device: str) -> torch.nn.Module:
    """The built-in random-weight CLIP vision model (32×32 input), loaded once per device."""
    from fcs.constraints.style import load_clip_vision
    from fcs.tiny import build_tiny_clip_vision

    with tempfile.TemporaryDirectory() as folder:
        return load_clip_vision(str(build_tiny_clip_vision(folder)), device)


def _pixel_data(den, x0: Tensor) -> dict:
    return {"image": den.decode(x0), "mask": _mask(len(x0)).to(x0.device)}


def _low_res(scale: int) -> Callable[..., dict]:
    return lambda den, x0: {"low": downsample(den.decode(x0), scale)}


CASES = [
    Case("latent-inpaint", LatentInpaint,
         data=lambda den, x0: {"y": x0.clone(),
                               "known": (_seeded((len(x0), 1, *x0.shape[2:]), 2).round() * 0.75 + 0.25).to(x0.device)},
         build=lambda den, d: LatentInpaint(d["y"], d["known"])),
    Case("latent-inpaint-from-pixels", LatentInpaint,
         data=lambda den, x0: {"image": den.decode(x0).clamp(0, 1), "mask": _mask(len(x0)).to(x0.device)},
         build=lambda den, d: LatentInpaint.from_pixels(den, d["image"], d["mask"]),
         solution=lambda constraint, x0: constraint.target),
    Case("pixel-inpaint", PixelInpaint, data=_pixel_data,
         build=lambda den, d: PixelInpaint(den.decode, d["image"], d["mask"])),
    Case("pixel-inpaint-pixel-model", PixelInpaint, data=_pixel_data,
         build=lambda den, d: PixelInpaint(den.decode, d["image"], d["mask"]), model="pixel"),
    Case("super-resolution-x4", SuperResolution, data=_low_res(4),
         build=lambda den, d: SuperResolution(den.decode, d["low"], 4)),
    Case("super-resolution-x2-pixel-model", SuperResolution, data=_low_res(2),
         build=lambda den, d: SuperResolution(den.decode, d["low"], 2), model="pixel"),
    Case("encoder-super-resolution-x4", EncoderSuperResolution, data=_low_res(4),
         build=lambda den, d: EncoderSuperResolution(den.decode, den.encode, d["low"], 4), exact_error=False),
    Case("encoder-super-resolution-x2-pixel-model", EncoderSuperResolution, data=_low_res(2),
         build=lambda den, d: EncoderSuperResolution(den.decode, den.encode, d["low"], 2), model="pixel"),
    Case("image-loss-charbonnier", ImageLoss, data=lambda den, x0: {"target": den.decode(x0)},
         build=lambda den, d: ImageLoss(den.decode, _charbonnier(d["target"]))),
    Case("style", Style, data=lambda den, x0: {"references": den.decode(x0)},
         build=lambda den, d: Style(den.decode, _tiny_clip(str(den.device)), d["references"]),
         batch_atol=1e-4),  # the Gram matrices square the decoder's batch round-off (measured 1.2e-5)
    Case("projected-pixel-model", ProjectedConstraint, data=lambda den, x0: {"target": den.decode(x0)},
         build=lambda den, d: ProjectedConstraint(den.decode, den.encode, **_towards(d["target"])), model="pixel"),
    Case("projected", ProjectedConstraint, data=lambda den, x0: {"target": den.decode(x0)},
         build=lambda den, d: ProjectedConstraint(den.decode, den.encode, **_towards(d["target"])), exact_error=False),
    Case("encoder-super-resolution-x4-photo-model", EncoderSuperResolution, data=_low_res(4),
         build=lambda den, d: EncoderSuperResolution(den.decode, den.encode, d["low"], 4), model="photo_model"),
    Case("projected-photo-model", ProjectedConstraint, data=lambda den, x0: {"target": den.decode(x0)},
         build=lambda den, d: ProjectedConstraint(den.decode, den.encode, **_towards(d["target"])),
         model="photo_model"),
]
EXACT = [c for c in CASES if c.exact_error]


def _x0_solution(den) -> Tensor:
    """A model-space x̂0 (B, C, h, w) for 32x32 images; within (-1, 1) so pixel models decode into [0, 1]."""
    f = den.scale_factor
    x0 = 0.4 * torch.randn(B, den.channels, 32 // f, 32 // f, generator=torch.Generator().manual_seed(0))
    return x0.clamp(-0.9, 0.9).to(den.device)


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request):
    """(case, denoiser, solution, data, constraint) for one registry entry."""
    c = request.param
    den = request.getfixturevalue(c.model)
    x0 = _x0_solution(den)
    with torch.no_grad():
        data = c.data(den, x0)
    constraint = c.build(den, data)
    return c, den, c.solution(constraint, x0), data, constraint


def _away(x0: Tensor) -> Tensor:
    """A point away from the solution (per-item different offsets)."""
    g = torch.Generator().manual_seed(1)
    return x0 + 0.3 * torch.randn(x0.shape, generator=g).to(x0.device)


def test_registry_covers_every_exported_constraint():
    exported = {obj for obj in vars(fcs.constraints).values()
                if inspect.isclass(obj) and issubclass(obj, Constraint) and obj is not Constraint}
    covered = {c.cls for c in CASES}
    missing = exported - covered
    assert not missing, f"add a Case to tests/test_constraints.py for {sorted(m.__name__ for m in missing)}"


def test_zero_residual_and_error_at_the_solution(case):
    c, den, x0_sol, data, constraint = case
    r = constraint.residual(x0_sol)
    assert r.shape == (B,)
    assert r.abs().max() <= 1e-5, r.tolist()
    e, r_err = constraint.error(x0_sol)
    assert e.shape == x0_sol.shape
    assert torch.isfinite(e).all()
    if c.exact_error:
        assert e.abs().max() <= 1e-5, float(e.abs().max())
    torch.testing.assert_close(r_err, r.detach(), rtol=1e-5, atol=1e-6)


def test_error_shape_finite_and_residual_positive_away_from_the_solution(case):
    c, den, x0_sol, data, constraint = case
    x0 = _away(x0_sol)
    e, r = constraint.error(x0)
    assert e.shape == x0.shape and e.dtype == torch.float32
    assert torch.isfinite(e).all() and torch.isfinite(r).all()
    assert r.shape == (B,) and (r > 1e-4).all()
    assert not r.requires_grad and not e.requires_grad
    assert (e.flatten(1).abs().amax(1) > 0).all()


@pytest.mark.parametrize("case", EXACT, ids=[c.name for c in EXACT], indirect=True)
def test_error_points_toward_the_constraint(case):
    """A small step along e lowers every item's residual."""
    c, den, x0_sol, data, constraint = case
    x0 = _away(x0_sol)
    e, r = constraint.error(x0)
    step = 0.1 if c.cls is LatentInpaint else 1e-2
    with torch.no_grad():
        r_after = constraint.residual(x0 + step * e / e.flatten(1).abs().amax(1).view(-1, 1, 1, 1))
    assert (r_after < r).all(), f"{r.tolist()} -> {r_after.tolist()}"


def test_residual_is_differentiable(case):
    c, den, x0_sol, data, constraint = case
    x0 = _away(x0_sol).requires_grad_(True)
    with torch.enable_grad():
        r = constraint.residual(x0)
        assert r.requires_grad
        (grad,) = torch.autograd.grad(r.sum(), x0)
    assert torch.isfinite(grad).all()


def test_batch_equals_single_items(case):
    """Row i of error/residual depends on item i only: B items in one batch = B single runs."""
    c, den, x0_sol, data, constraint = case
    x0 = _away(x0_sol)
    e, r = constraint.error(x0)
    for i in range(B):
        single = c.build(den, {k: v[i : i + 1] for k, v in data.items()})
        e_i, r_i = single.error(x0[i : i + 1])
        torch.testing.assert_close(e_i, e[i : i + 1], rtol=1e-4, atol=c.batch_atol)
        torch.testing.assert_close(r_i, r[i : i + 1], rtol=1e-4, atol=1e-6)


def test_items_do_not_mix(case):
    """Changing item 0's x̂0 changes no other item's error or residual."""
    c, den, x0_sol, data, constraint = case
    x0 = _away(x0_sol)
    e, r = constraint.error(x0)
    moved = x0.clone()
    moved[0] += 1.0
    e2, r2 = constraint.error(moved)
    assert not torch.allclose(r2[0], r[0])
    torch.testing.assert_close(e2[1:], e[1:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r2[1:], r[1:], rtol=1e-4, atol=1e-6)


def test_super_resolution_rejects_a_bad_scale(sd):
    with pytest.raises(ValueError, match="scale"):
        SuperResolution(sd.decode, torch.zeros(1, 3, 8, 8), 1.5)
