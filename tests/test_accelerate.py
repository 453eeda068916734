"""The GPU speed switches, checked on CPU: channels-last weights and a compiled UNet (graph capture
through the diffusers UNet; the inductor kernels themselves are timed and compared by
benchmarks/gpu.py on a GPU) give the same outputs as the plain model. Padded batches:
tests/pipeline/test_pipeline_actor.py."""

from __future__ import annotations

import torch

import fcs

TOL = dict(rtol=1e-4, atol=1e-4)  # fp32 round-off of reordered convolutions / captured graphs
# Newton's FD direction divides UNet outputs by dt = h / max|e|, amplifying that round-off (see test_newton)
FD_TOL = dict(rtol=1e-3, atol=2e-3)


def _run(den, make_problem, **options):
    images, masks = make_problem(2, 32, 32)
    constraint = fcs.constraints.LatentInpaint.from_pixels(den, images, masks)
    gens = fcs.noise.generators([1, 2])
    x_T = fcs.noise.randn(constraint.target.shape[1:], gens, den.device)
    return fcs.newton(den, constraint, x_T, den.encode_prompt(["", ""]), steps=2, newton_steps=1, gens=gens,
                      **options).x0


def _forward(den) -> torch.Tensor:
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return den.predict(x, 700, den.encode_prompt(["", ""]))[1]


def test_channels_last_and_compiled_unet_match_the_plain_model(model_dirs, make_problem):
    plain = fcs.load_denoiser(model_dirs["tiny"], device="cpu", dtype="float32")
    reference, forward = _run(plain, make_problem), _forward(plain)
    fast = fcs.load_denoiser(model_dirs["tiny"], device="cpu", dtype="float32")
    fast.accelerate(channels_last=True)
    torch.testing.assert_close(_forward(fast), forward, **TOL)
    torch.testing.assert_close(_run(fast, make_problem), reference, **FD_TOL)
    fast.accelerate(compile=True, backend="aot_eager")
    assert hasattr(fast.unet, "_orig_mod")  # the forward really goes through the captured graph
    torch.testing.assert_close(_forward(fast), forward, **TOL)
    torch.testing.assert_close(_run(fast, make_problem), reference, **FD_TOL)
    torch.testing.assert_close(_run(fast, make_problem, jacobian="jvp"), _run(plain, make_problem, jacobian="jvp"),
                               **TOL)  # the JVP runs the eager module
