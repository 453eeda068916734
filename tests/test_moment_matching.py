"""The "cg" inner solver reaches E[x0 | x_t, y] where that is known in closed form.

On ``oracle-gauss`` the denoiser is exact and linear in x_t, so Cov[x0 | x_t] = (σ²/α)·J and the
posterior mean given x_t and the kept pixels is x̂0 + J·Mᵀ·(M·J·Mᵀ)⁻¹·M·(y − x̂0), built here from the
dense J (one JVP per coordinate). Conjugate gradients in exact arithmetic reach it in at most as many
steps as there are kept coordinates (36 here); float32 round-off makes it about twice as many. The
backtracking that guards learned models (a step that would raise the residual is halved) is off for
that check: exact CG's residual norm is not monotone.
"""

from __future__ import annotations

import pytest
import torch

from fcs import SamplerConfig, newton, noise
from fcs.constraints import LatentInpaint, PixelInpaint
from fcs.denoiser import EMPTY
from fcs.oracles import load_oracle
from fcs.samplers.loop import State
from fcs.samplers.moment import BACKTRACKS, MomentMatching

SIDE = 4  # 48 coordinates: J is built densely
STEP = 6  # of 10: noisy enough that J is far from I, not so noisy that float32 CG needs many steps


def one_step(den, constraint, x, iterations: int, jacobian: str = "jvp",
             backtracks: int = 0) -> tuple[torch.Tensor, State]:
    schedule = den.schedule(10)
    state = State(x=x, i=STEP, schedule=schedule, cond=EMPTY, nfe=torch.zeros(x.shape[0], dtype=torch.long), trace=[])
    state.eps, state.x0 = den.predict(x, state.t)
    state.trace.append(constraint.residual(state.x0))
    before = state.x0.clone()
    MomentMatching(iterations, 0.005, jacobian, None, None, inner_steps=10, backtracks=backtracks).correct(
        den, constraint, state)
    return before, state


def dense_jacobian(den, x, t) -> torch.Tensor:
    n = x.numel()
    columns = [den.jvp(x, torch.eye(n)[j].view_as(x), t).flatten() for j in range(n)]
    return torch.stack(columns, 1).double()


@pytest.fixture(scope="module")
def problem():
    den = load_oracle("oracle-gauss")
    truth = den.decode(den.prior.sample(noise.generators([3]), (3, SIDE, SIDE)).float())
    mask = torch.zeros(1, 1, SIDE, SIDE)
    mask[..., 1:3, 1:4] = 1
    constraint = LatentInpaint.from_pixels(den, truth, mask)
    x = den.schedule(10).sigmas[STEP] * noise.randn((3, SIDE, SIDE), noise.generators([7]))
    return den, constraint, x


def test_cg_reaches_the_exact_posterior_mean_given_x_t(problem):
    den, constraint, x = problem
    before, state = one_step(den, constraint, x, iterations=80)
    jac = dense_jacobian(den, x, state.t)
    kept = constraint.known.expand_as(x).flatten().bool()
    rows = jac[kept][:, kept]
    residual = (constraint.target - before).flatten().double()[kept]
    exact = before.flatten().double() + jac[:, kept] @ torch.linalg.solve(rows, residual)
    torch.testing.assert_close(state.x0.flatten().double(), exact, rtol=0, atol=2e-4)
    assert float(constraint.residual(state.x0)) < 1e-4  # the kept cells are met exactly
    assert int(state.nfe) >= 30  # one J·v per step, until the residual vanishes


def test_backtracking_never_lets_the_residual_grow(problem):
    den, constraint, x = problem
    residuals = [float(constraint.residual(one_step(den, constraint, x, k, backtracks=BACKTRACKS)[1].x0))
                 for k in range(8)]
    plain = [float(constraint.residual(one_step(den, constraint, x, k)[1].x0)) for k in range(8)]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(residuals, residuals[1:], strict=False)), residuals
    assert any(b > a for a, b in zip(plain, plain[1:], strict=False))  # exact CG's residual is not monotone here


def test_cg_makes_eps_consistent_with_the_corrected_x0(problem):
    den, constraint, x = problem
    _, state = one_step(den, constraint, x, iterations=3)
    alpha, sigma = state.schedule.alphas[STEP], state.schedule.sigmas[STEP]
    torch.testing.assert_close(alpha * state.x0 + sigma * state.eps, x, rtol=0, atol=1e-5)


def test_finite_difference_and_exact_jvp_agree_on_a_linear_denoiser(problem):
    den, constraint, x = problem
    _, by_jvp = one_step(den, constraint, x, iterations=3, jacobian="jvp")
    _, by_fd = one_step(den, constraint, x, iterations=3, jacobian="fd")
    torch.testing.assert_close(by_fd.x0, by_jvp.x0, rtol=0, atol=5e-4)  # float32 FD round-off


def test_each_cg_step_costs_one_forward_and_lowers_the_residual(problem):
    den, constraint, _ = problem
    gens = noise.generators(range(2))
    many = LatentInpaint(constraint.target.expand(2, -1, -1, -1), constraint.known.expand(2, -1, -1, -1))
    for k in (1, 2, 3):
        out = newton(den, many, noise.randn((3, SIDE, SIDE), gens), steps=6, newton_steps=k, inner="cg")
        expected = SamplerConfig(steps=6, newton_steps=k, inner="cg").nfe_per_item
        assert expected == 6 + 6 * k and out.nfe.tolist() == [expected] * 2
        assert (out.residual_final < 0.5 * out.residual_init).all()


def test_cg_through_a_decoder_constraint_needs_no_denoiser_backward():
    den = load_oracle("oracle-latent")
    truth = den.decode(den.prior.sample(noise.generators([1]), den.latent_shape(16, 16)).float())
    mask = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.7).float()
    constraint = PixelInpaint(den.decode, truth, mask)
    gens = noise.generators([0])
    plain = newton(den, constraint, noise.randn(den.latent_shape(16, 16), gens), steps=6, newton_steps=0)
    solved = newton(den, constraint, noise.randn(den.latent_shape(16, 16), gens), steps=6, newton_steps=3, inner="cg")
    assert solved.backward_passes == 0
    assert float(solved.residual_final) < 0.2 * float(plain.residual_final)


def test_unknown_inner_solver_is_refused():
    with pytest.raises(ValueError, match="inner"):
        SamplerConfig(inner="lbfgs")
