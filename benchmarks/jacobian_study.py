"""The paper's Jacobian study on the reference model, where the full Jacobian is tractable (16×16).

    python benchmarks/jacobian_study.py [--t 500] [--n 4]

At t, for held-out digits with the bottom half masked: build J = ∂x̂0/∂x_t (256×256) exactly, and
compare one corrective step along three directions for the error e = M ⊙ (y − x̂0):
    exact Newton   d = argmin ‖J d − e‖² + λ‖d‖² (regularised least squares)
    inexact Newton d = J e      (what fcs uses: one forward pass by finite difference)
    gradient       d = Jᵀ e     (what gradient methods use: one backward pass)
each with the step length that minimises the known-region residual of x̂0(x_t + α d) (line search),
so the directions are compared, not their scales. Also reports how far J is from symmetric
(max |eigenvalue| of the skew part vs of J). Writes benchmarks/results/jacobian.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from digits import held_out_digits  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results"
ALPHAS = torch.logspace(-3, 1, 41).tolist()


def study(den, truth: torch.Tensor, t: int, lam: float, seed: int) -> dict:
    alpha, sigma = den.coefficients(t)
    gen = torch.Generator().manual_seed(seed)
    y = truth * 2 - 1
    mask = torch.zeros_like(truth)
    mask[..., 8:, :] = 1
    known = (1 - mask).flatten()
    x_t = (alpha * y + sigma * torch.randn(y.shape, generator=gen)).flatten()

    def tweedie(v: torch.Tensor) -> torch.Tensor:
        return den.predict(v.view(1, 1, 16, 16), t)[1].flatten()

    jac = torch.autograd.functional.jacobian(tweedie, x_t)  # (256, 256)
    x0 = tweedie(x_t).detach()
    e = known * (y.flatten() - x0)

    def residual(v: torch.Tensor) -> float:
        with torch.no_grad():
            return float(((known * (y.flatten() - tweedie(v))) ** 2).sum().sqrt() / known.sum().sqrt())

    directions = {
        "exact Newton (J⁻¹e, λ-regularised)": torch.linalg.solve(jac.T @ jac + lam * torch.eye(256), jac.T @ e),
        "inexact Newton (J·e)": jac @ e,
        "gradient (Jᵀ·e)": jac.T @ e,
    }
    out = {"t": t, "residual_before": residual(x_t), "x0_before": x0.view(16, 16).tolist(), "methods": {}}
    for name, d in directions.items():
        d = d / d.abs().max()
        scores = [(residual(x_t + alpha * d), alpha) for alpha in ALPHAS]
        best, alpha = min(scores)
        with torch.no_grad():
            x0_after = tweedie(x_t + alpha * d).view(16, 16)
        hole_mse = float((((x0_after.flatten() + 1) / 2 - truth.flatten()) ** 2 * mask.flatten()).sum() / mask.sum())
        out["methods"][name] = {"residual_after": best, "alpha": alpha,
                                "hole_psnr": 10 * np.log10(1 / max(hole_mse, 1e-10)),
                                "cosine_to_exact": None, "x0_after": x0_after.tolist()}
    exact = directions["exact Newton (J⁻¹e, λ-regularised)"]
    for name, d in directions.items():
        out["methods"][name]["cosine_to_exact"] = float(torch.nn.functional.cosine_similarity(d, exact, dim=0))
    skew = (jac - jac.T) / 2
    out["max_abs_eig_J"] = float(torch.linalg.eigvals(jac).abs().max())
    out["max_abs_eig_skew"] = float(torch.linalg.eigvals(skew).abs().max())
    out["relative_asymmetry"] = float(torch.linalg.matrix_norm(skew) / torch.linalg.matrix_norm(jac))
    return out


def main() -> None:
    from fcs import load_denoiser

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t", type=int, default=500)
    parser.add_argument("--n", type=int, default=4, help="held-out digits to average over")
    parser.add_argument("--lam", type=float, default=1e-2)
    args = parser.parse_args()
    den = load_denoiser(HERE / "reference_model", device="cpu", dtype="float32")
    truths = held_out_digits(args.n)
    runs = [study(den, truths[i:i + 1], args.t, args.lam, seed=i) for i in range(args.n)]
    names = list(runs[0]["methods"])
    summary = {
        "t": args.t, "n": args.n, "lambda": args.lam,
        "residual_before": float(np.mean([r["residual_before"] for r in runs])),
        "max_abs_eig_J": float(np.mean([r["max_abs_eig_J"] for r in runs])),
        "max_abs_eig_skew": float(np.mean([r["max_abs_eig_skew"] for r in runs])),
        "relative_asymmetry": float(np.mean([r["relative_asymmetry"] for r in runs])),
        "methods": {n: {k: float(np.mean([r["methods"][n][k] for r in runs]))
                        for k in ("residual_after", "hole_psnr", "cosine_to_exact")} for n in names},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "jacobian.json").write_text(json.dumps(summary, indent=2))
    lines = [f"### One corrective step at t={args.t} on the reference model "
             f"({args.n} held-out digits, bottom half masked)", "",
             f"Known-region residual before the step: {summary['residual_before']:.4f}. "
             f"max |eig| of J: {summary['max_abs_eig_J']:.2f}; "
             f"of its skew part (J−Jᵀ)/2: {summary['max_abs_eig_skew']:.2f}; "
             f"‖skew‖/‖J‖ = {summary['relative_asymmetry']:.3f}.", "",
             "| direction | residual after (best step) | PSNR in hole of x̂0 | cosine to exact Newton |",
             "|---|---|---|---|"]
    for n, m in summary["methods"].items():
        lines.append(f"| {n} | {m['residual_after']:.4f} | {m['hole_psnr']:.2f} | {m['cosine_to_exact']:.3f} |")
    md = "\n".join(lines) + "\n"
    (RESULTS / "jacobian.md").write_text(md)
    _plot(runs[: min(4, args.n)], truths, RESULTS / "jacobian.png")
    print(md)


def _plot(runs: list[dict], truths: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs[0]["methods"])
    fig, axes = plt.subplots(len(runs), 2 + len(names), figsize=(2 * (2 + len(names)), 2 * len(runs)))
    axes = np.atleast_2d(axes)
    for i, r in enumerate(runs):
        panels = [("truth", truths[i, 0].numpy() * 2 - 1), ("x̂0 before", np.array(r["x0_before"]))]
        panels += [(n.split(" (")[0] + "\n" + n.split(" (")[1].rstrip(")"), np.array(r["methods"][n]["x0_after"]))
                   for n in names]
        for j, (title, img) in enumerate(panels):
            axes[i, j].imshow(img, cmap="gray", vmin=-1, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
