"""jacobian="auto": finite difference for fp32 models, exact JVP for half-precision ones, and the
finite difference's failure in fp16 that motivates it."""

import sys

import pytest
import torch

from fcs import load_denoiser
from fcs.constraints import LatentInpaint
from fcs.samplers import newton
from fcs.samplers.newton import jacobian_direction


def _problem(den, batch: int = 1):
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(batch, 4, 8, 8, generator=gen).to(den.device)
    known = torch.zeros(batch, 1, 8, 8, device=den.device)
    known[..., :4, :] = 1
    return LatentInpaint(target, known), torch.randn(batch, 4, 8, 8, generator=gen).to(den.device)


@pytest.mark.parametrize("dtype, expected", [("float32", "fd"), ("bfloat16", "jvp")])
def test_auto_picks_fd_in_fp32_and_jvp_in_half_precision(model_dirs, device, dtype, expected, monkeypatch):
    den = load_denoiser(model_dirs["tiny"], device=device, dtype=dtype)
    used = []
    real = jacobian_direction

    def spy(*args, **kwargs):
        used.append(args[-1])
        return real(*args, **kwargs)

    # the package re-exports the function `newton` under the module's name, so patch the module object
    monkeypatch.setattr(sys.modules["fcs.samplers.newton"], "jacobian_direction", spy)
    constraint, noise = _problem(den)
    result = newton(den, constraint, noise, den.encode_prompt([""]), steps=2, newton_steps=1)
    assert used and set(used) == {expected}
    assert torch.isfinite(result.x0).all()


def test_fd_is_far_off_in_half_precision_while_jvp_is_not(model_dirs, device):
    """Why auto exists: in bf16 the finite-difference step is rounded away."""
    exact = load_denoiser(model_dirs["tiny"], device=device, dtype="float32")
    half = load_denoiser(model_dirs["tiny"], device=device, dtype="bfloat16")
    constraint, x = _problem(exact)
    cond = exact.encode_prompt([""])
    t = 501
    _, x0 = exact.predict(x, t, cond)
    e, _ = constraint.error(x0)
    reference = exact.jvp(x, e, t, cond)
    _, x0_half = half.predict(x, t, cond)

    def rel(d):
        return float((d - reference).norm() / reference.norm())

    fd_half = jacobian_direction(half, x, x0_half, e, t, cond, 0.005, "fd")
    jvp_half = jacobian_direction(half, x, x0_half, e, t, cond, 0.005, "jvp")
    assert rel(fd_half) > 0.2
    assert rel(jvp_half) < 0.1
    assert rel(jvp_half) < rel(fd_half) / 3
