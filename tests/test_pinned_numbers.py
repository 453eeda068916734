"""Recorded output slices of every sampler on the tiny models (diffusers' ``expected_slice`` style).

The contract tests say a sampler has the right shape and cost; these say it computes the same
numbers as when they were recorded, so a one-line change to the maths fails here. Each case was
checked against mutants of the code (reversed lr schedule, wrong ᾱ in the DDIM update, stale ε
after the inner loop, FD step ``h`` ignored, per-item max over the batch), each of which moves the
slices by far more than the tolerance. Tolerances allow BLAS/threading round-off (fp32, tiny UNets),
not a change in the algorithm.

To re-record after an intended change: ``python tests/test_pinned_numbers.py`` prints the new values.
"""

from __future__ import annotations

import sys

import pytest
import torch

ATOL, RTOL = 1e-3, 1e-4
SEEDS = [11, 12]
# (model fixture, method, options): two items of different size of error, so a max over the whole
# batch instead of per item changes item 1's update.
CASES = {
    "newton-fd": ("sd", "newton", dict(steps=3, newton_steps=3, h=0.05)),
    "newton-lr": ("sd", "newton", dict(steps=2, newton_steps=2, lr=(0.6, 0.05), jacobian="fd")),
    "newton-jvp": ("sd", "newton", dict(steps=2, newton_steps=2, jacobian="jvp")),
    "newton-pixel": ("pixel", "newton", dict(steps=3, newton_steps=2)),
    "cg": ("sd", "newton", dict(steps=3, newton_steps=2, inner="cg", h=0.05)),
    "cg-pixel": ("pixel", "newton", dict(steps=3, newton_steps=3, inner="cg")),
    "ddim": ("sd", "ddim", dict(steps=4)),
    "ddim-eta": ("pixel", "ddim", dict(steps=3, eta=0.5)),
    "dps": ("sd", "dps", dict(steps=3, step_size=2.0)),
    "replacement": ("sd", "replacement", dict(steps=3)),
}
EXPECTED = {
    'cg': [0.018296, -3.332275, -0.208716, 0.053469, -0.011418, -4.424683, -0.07887,
           -0.04212, 0.005267, -0.020758, -8.035414, -0.2295, 1e-06, 1e-06],
    'cg-pixel': [-0.065829, 0.043802, -0.03736, -0.741084, -0.733659, -0.689943, 0.025913,
                 0.041688, 0.020245, -8.932872, 3.557062, 7.29046, 5.1e-05, 0.000117],
    'ddim': [-0.983338, -5.539487, 0.372734, -4.089663, 0.010699, -5.465524, 1.060534,
             1.892998, 7.555119, 4.380881, -10.026891, -1.392321, 4.51193, 4.731882],
    'ddim-eta': [-2.576237, 3.841152, -18.745893, -1.953252, 3.54451, -2.438464, -2.925658,
                 7.972428, 0.955444, -8.957407, 1.85798, 7.262543, 5.096688, 4.898211],
    'dps': [-0.635694, -4.104011, 0.078827, -2.641416, -0.150542, -3.901991, 0.689287,
            1.087753, 5.329506, 2.895869, -7.399252, -0.928525, 3.086975, 3.070804],
    'newton-fd': [-0.272768, -3.8367, -0.187873, -1.799442, 0.389787, -4.48803, 0.420623,
                  0.71342, 3.133015, 1.403144, -7.659617, -0.490631, 1.736722, 1.574498],
    'newton-jvp': [-0.24735, -2.449114, -0.010655, -1.480523, 0.402773, -2.615943, 0.116737,
                   0.664803, 2.442476, 1.348622, -4.639421, -0.473058, 1.47425, 1.428516],
    'newton-lr': [-0.243263, -2.434227, -0.026218, -1.448908, 0.411501, -2.632887, 0.100517,
                  0.656091, 2.364846, 1.295926, -4.660675, -0.45761, 1.432057, 1.375497],
    'newton-pixel': [-2.731386, 3.809282, -15.813524, -1.581536, 2.654681, -1.265247, -1.445034,
                     6.778658, 1.074577, -9.214029, 2.178721, 7.476023, 4.169647, 3.976524],
    'replacement': [0.018297, -4.033304, 0.036657, 0.053469, -0.011417, -3.9499, -0.07887,
                    -0.042117, 0.005268, -0.020758, -7.406841, -0.601867, 0.0, 0.0],
}


def _run(denoiser, method: str, options: dict, make_problem, sample_inpaint) -> list[float]:
    images, masks = make_problem(2, 32, 32, seed=5)
    images[1] = images[1] * 0.3  # a darker second item: a smaller error than item 0's
    result, _ = sample_inpaint(denoiser, images, masks, SEEDS, method=method, **options)
    x0 = result.x0.detach().cpu()
    return [round(float(v), 6) for v in torch.cat([x0[:, 0, 1, :3].flatten(), x0[:, -1, -1, -3:].flatten(),
                                                   result.residual_final.cpu()])]


@pytest.mark.parametrize("case", sorted(CASES))
def test_sampler_output_matches_the_recorded_slice(case, request, make_problem, sample_inpaint):
    fixture, method, options = CASES[case]
    got = _run(request.getfixturevalue(fixture), method, options, make_problem, sample_inpaint)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(EXPECTED[case]), rtol=RTOL, atol=ATOL)


def test_every_registered_sampler_has_a_pinned_case():
    import fcs

    assert {method for _, method, _ in CASES.values()} == set(fcs.SAMPLERS)


if __name__ == "__main__":  # re-record: print EXPECTED for the current code
    import importlib.util
    import tempfile
    from pathlib import Path

    import fcs
    from fcs import tiny

    spec = importlib.util.spec_from_file_location("fcs_test_conftest", Path(__file__).with_name("conftest.py"))
    helpers = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = helpers  # its dataclasses look their module up there
    spec.loader.exec_module(helpers)

    def problem(batch, height, width, seed=0):
        return helpers.make_images(batch, height, width, seed), helpers.make_masks(batch, height, width)

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    models = {"sd": fcs.load_denoiser(tiny.build_tiny_sd(root / "sd"), device="cpu", dtype="float32"),
              "pixel": fcs.load_denoiser(tiny.build_tiny_pixel(root / "px"), device="cpu", dtype="float32")}
    print("EXPECTED = {")
    for name in sorted(CASES):
        fixture, method, options = CASES[name]
        values = _run(models[fixture], method, options, problem, helpers._sample_inpaint)
        print(f"    {name!r}: {values},", file=sys.stdout)
    print("}")
