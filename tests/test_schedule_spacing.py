"""The outer time grid and transition: a log-SNR grid is uniform in log(α/σ) between the model's own end
points, and the 2m step is DPM-Solver++(2M), exact for x̂0 linear in log-SNR."""

from __future__ import annotations

import math

import pytest
import torch

from fcs.oracles import load_oracle
from fcs.samplers.loop import schedule_for
from fcs.schedule import Schedule, log_snr_spaced


@pytest.mark.parametrize("convention", ["epsilon", "flow"])
@pytest.mark.parametrize("steps", [3, 16, 50])
def test_a_log_snr_grid_keeps_the_end_points_and_spaces_the_rest_evenly(convention, steps):
    den = load_oracle("oracle-gauss", convention)
    own = den.schedule(steps)
    grid = schedule_for(den, steps, (3, 8, 8), "logsnr")
    lam = [grid.log_snr(i) for i in range(len(grid))]
    assert len(grid) == steps and grid.timesteps[0] == own.timesteps[0] and grid.timesteps[-1] == own.timesteps[-1]
    assert all(b > a for a, b in zip(lam, lam[1:], strict=False))
    gaps = torch.tensor(lam).diff()
    if steps <= 16:  # SD's 999 training steps resolve 16 even gaps; at 50 the low-noise end runs out of them
        assert float(gaps.max() / gaps.min()) < 1.6
    assert float(gaps.max()) < (lam[-1] - lam[0]) / (steps - 1) * 2


def test_a_grid_too_coarse_to_pick_from_is_the_own_one():
    own = Schedule((3, 2, 1), (0.5, 0.7, 0.9), (0.8, 0.6, 0.3))
    assert log_snr_spaced(own, Schedule((3, 1), (0.5, 0.9), (0.8, 0.3))) is own


def _step_errors(h: float) -> tuple[float, float]:
    """|DDIM − exact| and |2m − exact| of one step from λ = 0 to h (2m also has x̂0 at λ = −h) for
    x̂0(λ) = sin λ, whose exact flow is x(λ') = σ'/σ·x + σ'∫e^λ·x̂0(λ) dλ."""
    lam = (-h, 0.0, h)
    alphas = tuple(1 / math.sqrt(1 + math.exp(-2 * v)) for v in lam)
    sigmas = tuple(a * math.exp(-v) for a, v in zip(alphas, lam, strict=True))
    schedule = Schedule((900, 500, 100), alphas, sigmas)
    x0 = [torch.tensor([math.sin(v)], dtype=torch.float64) for v in lam]
    x = alphas[1] * x0[1] + sigmas[1] * torch.tensor([0.7], dtype=torch.float64)
    eps = (x - alphas[1] * x0[1]) / sigmas[1]

    def antiderivative(v: float) -> float:  # ∫ e^v sin v dv
        return math.exp(v) * (math.sin(v) - math.cos(v)) / 2

    exact = sigmas[2] / sigmas[1] * x + sigmas[2] * (antiderivative(h) - antiderivative(0.0))
    first = schedule.transition(x0[1], eps, 1)
    second = schedule.transition(*schedule.second_order(x0[1], eps, x0[0], 1), 1)
    return abs(float(first - exact)), abs(float(second - exact))


def test_the_second_order_step_is_second_order():
    """Halving the step cuts DDIM's local error about 4× (first order) and 2m's about 8× (second order)."""
    (first, second), (first_half, second_half) = _step_errors(0.2), _step_errors(0.1)
    assert second < first / 5
    assert 3.5 < first / first_half < 4.5
    assert 7 < second / second_half < 9
