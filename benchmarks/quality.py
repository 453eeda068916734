"""Quality of inexact Newton vs baselines on held-out digits with the trained reference model.

    python benchmarks/quality.py                      # 64 held-out digits, all tasks and methods
    python benchmarks/quality.py --n 16 --tasks half  # quicker

Tasks: box, half-image and random-pixel inpainting, and ×2 super-resolution. Methods: inexact Newton
(K = 1, 3, 5), DPS (step tuned on training digits; same S and 5× S), replacement, unconstrained DDIM,
and a classical baseline (biharmonic inpainting from scikit-image; bicubic upsampling for SR).
Metrics: PSNR (whole image and inside the hole), SSIM, known-region residual (RMS over the known
pixels, or of the downsampled output vs the low-res input for SR, before any compositing),
seconds/item and peak memory (each method in its own subprocess; CPU: peak resident set size).
Writes benchmarks/results/quality.{md,json} and quality.png.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from digits import held_out_digits  # noqa: E402

HERE = Path(__file__).parent
MODEL = HERE / "reference_model"
RESULTS = HERE / "results"
TASKS = ("box", "half", "pixels", "sr2")
METHODS = ("newton-k1", "newton-k3", "newton-k5", "dps", "dps-5x", "replacement", "unconstrained", "classical")
DPS_STEPS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def make_masks(task: str, n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) masks, 1 = regenerate."""
    m = torch.zeros(n, 1, size, size)
    if task == "box":
        m[..., 5:11, 5:11] = 1
    elif task == "half":
        m[..., size // 2:, :] = 1
    elif task == "pixels":
        m = (torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) < 0.7).float()
    return m


def run_method(den, method: str, task: str, truth: torch.Tensor, steps: int = 20, seed: int = 0,
               dps_step: float = 1.0) -> torch.Tensor:
    """Restore ``truth`` (N, 1, 16, 16) in [0, 1] under ``task`` with ``method``; returns (N, 1, 16, 16)."""
    from fcs import SAMPLERS, noise
    from fcs.constraints import LatentInpaint, SuperResolution, downsample

    n = truth.shape[0]
    if task == "sr2":
        low = downsample(truth, 2)
        if method == "classical":
            return torch.nn.functional.interpolate(low, scale_factor=2, mode="bicubic").clamp(0, 1)
        constraint = SuperResolution(den.decode, low, 2)
    else:
        mask = make_masks(task, n)
        if method == "classical":
            from skimage.restoration import inpaint_biharmonic

            return torch.stack([torch.from_numpy(inpaint_biharmonic(t[0].numpy(), m[0].numpy().astype(bool)))[None]
                                for t, m in zip(truth, mask, strict=True)]).float().clamp(0, 1)
        constraint = LatentInpaint.from_pixels(den, truth, mask)
    if method == "replacement" and task == "sr2":
        return torch.full_like(truth, float("nan"))
    gens = noise.generators(range(seed, seed + n))
    x_T = noise.randn((1, 16, 16), gens)
    name, opts = method, {}
    if method.startswith("newton"):
        name = "newton"
        k = int(method.split("-k")[1])
        opts = dict(newton_steps=k, lr=0.1 if task == "sr2" else None)
    elif method.startswith("dps"):
        name, opts = "dps", dict(step_size=dps_step)
        steps = steps * 5 if method == "dps-5x" else steps
    elif method == "unconstrained":
        name = "ddim"
    result = SAMPLERS[name](den, constraint, x_T, None, steps=steps, gens=gens, **opts)
    return den.decode(result.x0).clamp(0, 1)


def metrics(out: torch.Tensor, truth: torch.Tensor, task: str) -> dict:
    from skimage.metrics import structural_similarity

    from fcs.constraints import downsample

    hole = torch.ones_like(truth) if task == "sr2" else make_masks(task, truth.shape[0])

    def psnr(a, b, w):
        mse = ((a - b) ** 2 * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)
        return (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()

    if task == "sr2":
        known = ((downsample(out, 2) - downsample(truth, 2)) ** 2).flatten(1).mean(1).sqrt().mean().item()
    else:
        k = 1 - hole
        known = (((out - truth) ** 2 * k).flatten(1).sum(1) / k.flatten(1).sum(1).clamp_min(1)).sqrt().mean().item()
    ssim = np.mean([structural_similarity(o[0].numpy(), t[0].numpy(), data_range=1.0, win_size=7)
                    for o, t in zip(out, truth, strict=False)])
    return {"psnr": psnr(out, truth, torch.ones_like(truth)), "psnr_hole": psnr(out, truth, hole),
            "ssim": float(ssim), "known_residual": known}


def tune_dps(den, method: str, task: str, steps: int) -> float:
    """Pick ζ for ``method`` (dps or dps-5x, at its own step count) by hole PSNR on 16 training
    digits (never the held-out ones)."""
    from digits import load_digits_16, split_indices

    images, _ = load_digits_16()
    val = images[split_indices()[0][:16]]
    scores = {z: metrics(run_method(den, method, task, val, steps, dps_step=z), val, task)["psnr_hole"]
              for z in DPS_STEPS}
    return max(scores, key=scores.get)


def child(method: str, tasks: list[str], n: int, steps: int) -> dict:
    from fcs import load_denoiser

    torch.set_grad_enabled(method.startswith("dps"))
    den = load_denoiser(MODEL, device="cpu", dtype="float32")
    truth = held_out_digits(n)
    rows, samples = [], {}
    for task in tasks:
        if method == "replacement" and task == "sr2":
            continue
        zeta = tune_dps(den, method, task, steps) if method.startswith("dps") else None
        start = time.perf_counter()
        out = run_method(den, method, task, truth, steps, dps_step=zeta or 1.0)
        seconds = (time.perf_counter() - start) / n
        rows.append({"method": method, "task": task, "seconds_per_item": seconds, "dps_step": zeta,
                     **metrics(out, truth, task)})
        samples[task] = out[:8, 0].tolist()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        r["peak_mb"] = peak
    return {"rows": rows, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--merge", action="store_true", help="keep other methods' rows from the last results file")
    parser.add_argument("--render", action="store_true", help="only rewrite quality.md from quality.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    if args.render:
        data = json.loads((RESULTS / "quality.json").read_text())
        md = markdown(data["rows"], data["n"], data["steps"])
        (RESULTS / "quality.md").write_text(md)
        print(md)
        return
    if args.child:
        print(json.dumps(child(args.child, tasks, args.n, args.steps)))
        return
    rows, samples = [], {}
    for method in args.methods.split(","):
        res = subprocess.run([sys.executable, __file__, "--child", method, "--n", str(args.n), "--steps",
                              str(args.steps), "--tasks", args.tasks], check=True, capture_output=True, text=True)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        rows += out["rows"]
        samples[method] = out["samples"]
        print(f"{method}: done", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / "quality.json"
    if args.merge and previous.exists():  # rerun some methods, keep the other methods' rows
        old = json.loads(previous.read_text())
        if (old["n"], old["steps"]) == (args.n, args.steps):
            ran = set(args.methods.split(","))
            kept = [r for r in old["rows"] if r["method"] not in ran]
            rows = sorted(kept + rows, key=lambda r: (METHODS.index(r["method"]), TASKS.index(r["task"])))
    (RESULTS / "quality.json").write_text(json.dumps({"n": args.n, "steps": args.steps, "rows": rows}, indent=2))
    md = markdown(rows, args.n, args.steps)
    (RESULTS / "quality.md").write_text(md)
    if not args.merge:
        plot(samples, held_out_digits(8), tasks, RESULTS / "quality.png")
    print(md)


def pivot(rows: list[dict], key: str = "psnr_hole") -> list[str]:
    """A task × method table of one metric (the summary in docs/results.md)."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = ["| task | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for task in TASKS:
        cells = {r["method"]: r[key] for r in rows if r["task"] == task}
        if cells:
            lines.append(f"| {task} | "
                         + " | ".join(f"{cells[m]:.2f}" if m in cells else "n/a" for m in methods) + " |")
    return lines


def markdown(rows: list[dict], n: int, steps: int) -> str:
    lines = [f"### Quality on {n} held-out digits (reference model, S={steps})", "",
             "PSNR (dB) inside the hole (whole image for sr2), by task and method:", "", *pivot(rows), "",
             "All metrics (s/item and peak MB come from a shared, busy machine: compare costs with "
             "benchmarks/cost_sd.py, not with this column):", "",
             "| task | method | PSNR | PSNR hole | SSIM | known residual | s/item | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["method"] + (f" (ζ={r['dps_step']:g})" if r.get("dps_step") else "")
        lines.append(f"| {r['task']} | {name} | {r['psnr']:.2f} | {r['psnr_hole']:.2f} | {r['ssim']:.3f} | "
                     f"{r['known_residual']:.4f} | {r['seconds_per_item']:.4f} | {r['peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(samples: dict, truth: torch.Tensor, tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(samples)
    fig, axes = plt.subplots(len(tasks), len(methods) + 1, figsize=(1.6 * (len(methods) + 1), 1.7 * len(tasks)))
    axes = np.atleast_2d(axes)
    for i, task in enumerate(tasks):
        def grid(imgs):
            return np.concatenate([np.concatenate(list(np.asarray(imgs)[r * 2:(r + 1) * 2]), 1) for r in range(4)], 0)

        axes[i, 0].imshow(grid(truth[:8, 0].numpy()), cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_title("truth" if i == 0 else "", fontsize=8)
        axes[i, 0].set_ylabel(task)
        for j, m in enumerate(methods):
            if task in samples[m]:
                axes[i, j + 1].imshow(grid(samples[m][task]), cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, j + 1].set_title(m, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
