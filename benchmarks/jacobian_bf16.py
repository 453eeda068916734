"""How well J·e survives bf16 in every model family: finite difference at several h and the exact JVP.

    python benchmarks/jacobian_bf16.py            # every family's tiny model on the CPU (about a minute)

For each family (SD 1.x, SDXL, SD3, FLUX.1-dev) the tiny built-in model is loaded twice, in float64
(the reference: the exact forward-mode JVP) and in bf16. At the first, middle and last step of a
10-step schedule, for two 64² latent-inpainting problems (x_t from the encoded image, e = the
constraint's error of x̂0), it prints the cosine between the reference J·e and the bf16 one: finite
difference with Newton's step (h in units of max|e|, scaled as Newton scales it) at h ∈ {0.005, 0.05,
0.5}, and ``torch.func.jvp``. ``jacobian="auto"`` follows from it. Writes
benchmarks/results/jacobian_bf16.{md,json}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results"
FAMILIES = {"SD 1.x": "tiny", "SDXL": "tiny-sdxl", "SD3": "tiny-sd3", "FLUX.1-dev": "tiny-flux"}
H_VALUES = (0.005, 0.05, 0.5)


def problem(den, side: int = 64):
    """(x_t at every step of interest, e, cond, schedule) for two inpainting problems."""
    from fcs import noise
    from fcs.constraints import LatentInpaint
    from fcs.photos import held_out_crops

    crops = torch.from_numpy(held_out_crops(side, per_photo=1)[:2]).permute(0, 3, 1, 2) / 255.0
    mask = torch.zeros(2, 1, side, side)
    mask[..., side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 1
    constraint = LatentInpaint.from_pixels(den, crops.to(den.dtype), mask)
    schedule = den.schedule(10, shape=tuple(constraint.target.shape[1:]))
    z = noise.randn(constraint.target.shape[1:], noise.generators([0, 1]), den.device)
    return constraint, z, den.encode_prompt(["", ""]), schedule


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double().flatten(1), b.double().flatten(1), dim=1)


def measure(name: str) -> dict:
    from fcs import load_denoiser
    from fcs.samplers.newton import jacobian_direction

    ref = load_denoiser(name, device="cpu", dtype=torch.float64)
    half = load_denoiser(name, device="cpu", dtype=torch.bfloat16)
    constraint, z, cond, schedule = problem(ref)
    half_cond = half.encode_prompt(["", ""])
    rows = []
    for i in (0, len(schedule) // 2, len(schedule) - 1):
        t, alpha, sigma = schedule.timesteps[i], schedule.alphas[i], schedule.sigmas[i]
        x = (alpha * constraint.target.double() + sigma * z.double())
        with torch.no_grad():
            _, x0 = ref.predict(x, t, cond)
        e, _ = constraint.error(x0)
        exact = ref.jvp(x, e.double(), t, cond)
        row = {"t": float(t), "sigma": sigma}
        with torch.no_grad():
            _, x0_half = half.predict(x.float(), t, half_cond)
            for h in H_VALUES:
                fd = jacobian_direction(half, x.float(), x0_half, e.float(), t, half_cond, h * schedule.scale(i), "fd")
                row[f"fd h={h:g}"] = float(cosine(fd, exact).min())
        row["jvp"] = float(cosine(half.jvp(x.float(), e.float(), t, half_cond), exact).min())
        rows.append(row)
    return {"steps": rows, **{k: min(r[k] for r in rows) for k in rows[0] if k not in ("t", "sigma")}}


def markdown(results: dict) -> str:
    cols = [f"fd h={h:g}" for h in H_VALUES] + ["jvp"]
    lines = ["| family (tiny model, bf16) | " + " | ".join(f"FD h={h:g}" for h in H_VALUES) + " | exact JVP |",
             "|---" * (len(cols) + 1) + "|"]
    for family, r in results.items():
        lines.append(f"| {family} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    os.environ.setdefault("FCS_CACHE", str(Path(tempfile.gettempdir()) / "fcs-bench-cache"))
    torch.manual_seed(0)
    results = {family: measure(name) for family, name in FAMILIES.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "jacobian_bf16.json").write_text(json.dumps(results, indent=1) + "\n")
    md = ("Cosine to the float64 exact J·e (minimum over the first, middle and last of 10 steps and 2 "
          "items; `python benchmarks/jacobian_bf16.py`):\n\n" + markdown(results))
    (RESULTS / "jacobian_bf16.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
