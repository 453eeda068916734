"""Acceptance 2: one oracle in the ε, v and flow conventions walks one deterministic DDIM path, and the
samplers (plain DDIM and Newton) give the same x̂0 in every convention: the schedule, the conversion
to (ε̂, x̂0) and the transition are convention-free."""

from __future__ import annotations

import pytest
import torch

from fcs import SAMPLERS, noise
from fcs.constraints import LatentInpaint
from fcs.oracles import load_oracle
from fcs.schedule import PREDICTIONS


def _start(den, base, x_T):
    """The x_T of ``den`` at the point of the path where ``base`` starts from x_T (x_t/α_t is shared)."""
    sched, ref = den.schedule(10), base.schedule(10)
    return x_T * sched.alphas[0] / ref.alphas[0]


def _problem(name: str):
    den = load_oracle(name)
    shape = den.latent_shape(16, 16)
    truth = den.decode(den.prior.sample(noise.generators([3]), shape).float())
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    return LatentInpaint.from_pixels(den, truth.expand(2, -1, -1, -1), mask.expand(2, -1, -1, -1)), shape


@pytest.mark.parametrize("name", ["oracle-gauss", "oracle-latent"])
@pytest.mark.parametrize("method,options,rtol", [
    ("ddim", {}, 1e-5),
    ("newton", {"newton_steps": 3, "jacobian": "fd", "h": 0.05}, 1e-4),  # fp32 FD: exact for a linear x̂0
    ("newton", {"newton_steps": 2, "jacobian": "jvp"}, 1e-4),
    ("newton", {"newton_steps": 2, "jacobian": "jvp", "inner": "cg", "spacing": "logsnr", "solver": "2m"}, 1e-4),
    ("replacement", {}, 1e-4),
])
def test_every_convention_gives_the_same_samples(name, method, options, rtol):
    constraint, shape = _problem(name)
    base = load_oracle(name, "epsilon")
    x_T = noise.randn(shape, noise.generators([1, 2]))
    outs, traces = {}, {}
    for prediction in PREDICTIONS:
        den = load_oracle(name, prediction)
        result = SAMPLERS[method](den, constraint, _start(den, base, x_T), None, steps=10,
                                  gens=noise.generators([1, 2]), **options)
        outs[prediction], traces[prediction] = result.x0, result.residuals
    scale = outs["epsilon"].abs().max()
    for prediction in ("v_prediction", "flow"):
        torch.testing.assert_close(outs[prediction], outs["epsilon"], rtol=0, atol=rtol * float(scale))
        trace_scale = float(traces["epsilon"].max())
        torch.testing.assert_close(traces[prediction], traces["epsilon"], rtol=0, atol=rtol * trace_scale)


def test_the_deterministic_path_is_the_same_at_every_step():
    """x_t/α_t (the DDIM ODE's variable) agrees step by step across conventions."""
    base = load_oracle("oracle-gauss")
    x_T = noise.randn((3, 8, 8), noise.generators([0]))
    paths = {}
    for prediction in PREDICTIONS:
        den = load_oracle("oracle-gauss", prediction)
        sched = den.schedule(10)
        x = _start(den, base, x_T)
        path = []
        for i in range(len(sched) - 1):
            eps, x0 = den.predict(x, sched.timesteps[i])
            x = sched.transition(x0, eps, i)
            path.append(x / sched.alphas[i + 1])
        paths[prediction] = torch.stack(path)
    for prediction in ("v_prediction", "flow"):
        torch.testing.assert_close(paths[prediction], paths["epsilon"], rtol=1e-5, atol=1e-5)


def test_flow_schedule_is_rectified_flow():
    den = load_oracle("oracle-gauss", "flow")
    sched = den.schedule(5)
    for t, a, s in zip(sched.timesteps, sched.alphas, sched.sigmas, strict=True):
        assert den.coefficients(t) == (a, s) and abs(a + s - 1) < 1e-12
    eps, x0 = den.predict(torch.randn(1, 3, 8, 8), sched.timesteps[2])
    x = torch.randn(1, 3, 8, 8)
    out = den.model_output(x, sched.timesteps[2], None).float()
    eps, x0 = den.predict(x, sched.timesteps[2])
    torch.testing.assert_close(out, eps - x0, rtol=1e-4, atol=1e-4)  # v = ε − x0
