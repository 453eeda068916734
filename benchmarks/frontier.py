"""Quality vs cost: hole PSNR against UNet forwards per item, for every setting, on both trained models.

    python benchmarks/frontier.py                          # both models, all tasks, all settings
    python benchmarks/frontier.py --models digits --n 16   # quicker

Models: ``digits`` (the pixel-space reference model, 16² held-out digits) and ``photo`` (the built-in
latent model, 128² held-out photo crops). Tasks: box and strokes (photo) or half (digits)
inpainting, random missing pixels (70 %), ×2 super-resolution. Settings: inexact Newton at many
(S, K) with the paper's lr schedule, K only in the first part of the outer steps, per-item relative
early stop, the conjugate-gradient inner solver (``inner="cg"``) at several (S, K), and the named
presets; DPS (ζ tuned per task on training images) and replacement at the
same NFE budgets; unconstrained DDIM. One run, side by side: hole PSNR (whole image for SR) mean ±
95% CI, known-region residual, NFE and seconds per item. Writes benchmarks/results/frontier.{md,json}
and frontier.png (PSNR vs NFE per model and task).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"
TASKS = {"digits": ("box", "half", "pixels", "sr2"), "photo": ("box", "strokes", "pixels", "sr2")}
# NFE budgets of the one-forward-per-step baselines (DPS also pays a UNet backward per step, so the
# photo model's 220-step DPS is left out to keep the run under an hour on 2 CPU cores)
BUDGETS = {"digits": {"dps": (20, 30, 50, 70, 110, 220), "replacement": (20, 30, 50, 70, 110, 220)},
           "photo": {"dps": (20, 70), "replacement": (20, 70, 220)}}
GRID = {"digits": ((20, 1), (20, 2), (20, 3), (10, 1), (10, 2), (10, 3), (10, 5), (8, 3), (6, 5), (15, 2)),
        "photo": ((20, 1), (10, 1), (10, 2), (8, 3), (6, 5))}
CG_GRID = ((20, 1), (16, 2), (10, 4), (20, 3), (20, 4))  # the conjugate-gradient inner solver (inner="cg")
ZETAS = {"digits": (1.0, 3.0, 10.0, 30.0, 100.0), "photo": (1.0, 3.0, 10.0, 30.0)}


def newton_settings(model: str, task: str) -> dict[str, dict]:
    """name -> SamplerConfig fields. SR uses the paper's SR lr (0.1) in every Newton setting."""
    from dataclasses import asdict

    from fcs import SamplerConfig
    from fcs.presets import PRESETS, with_preset
    from fcs.tasks.superres import SR_DEFAULTS

    lr = {"lr": 0.1} if task.startswith("sr") else {}
    base = SR_DEFAULTS if task.startswith("sr") else SamplerConfig()
    defaults = asdict(SamplerConfig())

    def differs(config: SamplerConfig) -> dict:
        return {k: v for k, v in asdict(config).items() if v != defaults[k]}

    grid = {f"S{s} K{k}": {"steps": s, "newton_steps": k, **lr} for s, k in GRID[model]}
    if model == "digits":  # measured once on both models (they lost), kept on the cheap one
        grid.update({
            "S20 K3 first half": {"steps": 20, "newton_steps": 3, "inner_until": 0.5, **lr},
            "S14 K3 first 60%": {"steps": 14, "newton_steps": 3, "inner_until": 0.6, **lr},
            "S20 K5 rel_tol 0.1": {"steps": 20, "newton_steps": 5, "rel_tol": 0.1, **lr},
            "S10 K5 rel_tol 0.2": {"steps": 10, "newton_steps": 5, "rel_tol": 0.2, **lr},
        })
    grid.update({f"cg S{s} K{k}": {"steps": s, "newton_steps": k, "inner": "cg"} for s, k in CG_GRID})
    decoder = task.startswith("sr") or (task == "pixels" and model == "photo")  # the error comes through the VAE
    presets = {name: differs(with_preset(base, name, through_decoder=decoder)) for name in PRESETS}
    return {**presets, **{name: fields for name, fields in grid.items()
                          if differs(SamplerConfig(**fields)) not in presets.values()}}  # each setting once


def load(model: str, n: int, dtype: str = "float32"):
    """(denoiser, n held-out images (N, C, H, W) in [0, 1]) for ``digits`` or ``photo``."""
    from fcs import load_denoiser

    if model == "digits":
        from digits import held_out_digits

        return load_denoiser(HERE / "reference_model", device="cpu", dtype=dtype), held_out_digits(n)
    from fcs.photos import held_out_crops

    crops = held_out_crops(128, per_photo=4)[:n]
    return load_denoiser("photo", device="cpu", dtype=dtype), torch.from_numpy(crops).permute(0, 3, 1, 2) / 255.0


def training_images(model: str, n: int = 4) -> torch.Tensor:
    """Images the DPS step is tuned on: training digits / crops of training photos, never the held-out ones."""
    if model == "digits":
        from digits import load_digits_16, split_indices

        images, _ = load_digits_16()
        return images[split_indices()[0][:n]]
    from fcs.photos import TRAIN, center_square, load_photo

    crops = np.stack([center_square(load_photo(p), 128) for p in TRAIN[:n]])
    return torch.from_numpy(crops).permute(0, 3, 1, 2) / 255.0


def hole_mask(task: str, truth: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W), 1 = regenerate (all ones for SR: the whole image is judged)."""
    n, _, h, w = truth.shape
    if task == "sr2":
        return torch.ones(n, 1, h, w)
    if task == "pixels":
        return (torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(0)) < 0.7).float()
    if h == 16:  # digits: the reference benchmark's masks
        from quality import make_masks

        return make_masks(task, n)
    from jobs.demo import make_mask

    return torch.from_numpy(np.stack([make_mask(task, h, seed=i) > 127 for i in range(n)])).float()[:, None]


def constraint_for(den, task: str, truth: torch.Tensor):
    from fcs.constraints import LatentInpaint, PixelInpaint, SuperResolution, downsample

    if task == "sr2":
        return SuperResolution(den.decode, downsample(truth, 2), 2)
    mask = hole_mask(task, truth)
    if task == "pixels" and den.is_latent:  # scattered pixels leave no whole latent cell known
        return PixelInpaint(den.decode, truth, mask)
    return LatentInpaint.from_pixels(den, truth, mask)


def sample(den, task: str, truth: torch.Tensor, method: str, fields: dict,
           seed: int = 0) -> tuple[torch.Tensor, float, float]:
    """(decoded images in [0, 1], mean NFE per item, seconds per item); item i starts from seed + i."""
    from fcs import SAMPLERS, SamplerConfig, noise

    config = SamplerConfig(method=method, **fields)
    constraint = constraint_for(den, task, truth)
    n = truth.shape[0]
    gens = noise.generators(range(seed, seed + n))
    shape = (den.channels, truth.shape[2] // den.scale_factor, truth.shape[3] // den.scale_factor)
    cond = den.encode_prompt([""] * n)
    start = time.perf_counter()
    with torch.set_grad_enabled(method == "dps"):
        result = SAMPLERS[method](den, constraint, noise.randn(shape, gens), cond, steps=config.steps, gens=gens,
                                  **config.sampler_options())
    with torch.no_grad():
        out = den.decode(result.x0).clamp(0, 1)
    return out.expand(-1, truth.shape[1], -1, -1), float(result.nfe.float().mean()), (time.perf_counter() - start) / n


def scores(task: str, out: torch.Tensor, truth: torch.Tensor) -> dict:
    from fcs.constraints import downsample

    hole = hole_mask(task, truth)
    mse = ((out - truth) ** 2 * hole).flatten(1).sum(1) / (hole.flatten(1).sum(1) * truth.shape[1]).clamp_min(1)
    psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).numpy()
    if task == "sr2":
        known = (downsample(out, 2) - downsample(truth, 2)).pow(2).flatten(1).mean(1).sqrt()
    else:
        keep = 1 - hole
        known = (((out - truth) ** 2 * keep).flatten(1).sum(1) / (keep.flatten(1).sum(1) * truth.shape[1])
                 .clamp_min(1)).sqrt()
    ci = float(1.96 * psnr.std(ddof=1) / np.sqrt(len(psnr))) if len(psnr) > 1 else 0.0
    return {"psnr_hole": float(psnr.mean()), "psnr_ci": ci, "known_residual": float(known.mean())}


def tune_zeta(den, model: str, task: str) -> float:
    val = training_images(model)
    best = {z: scores(task, sample(den, task, val, "dps", {"steps": 20, "dps_step_size": z})[0], val)["psnr_hole"]
            for z in ZETAS[model]}
    return max(best, key=best.get)


def run_model(model: str, tasks: list[str], n: int, journal: Path, report_only: bool = False) -> list[dict]:
    """Every row of ``model``; rows already in ``journal`` (one JSON row per line, appended as they are
    measured) are reused, so an interrupted run resumes where it stopped. ``report_only``: the
    journal's rows only, measuring nothing."""
    done = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    den, truth = load(model, n)
    rows = []

    def add(task: str, method: str, setting: str, fields: dict) -> None:
        key = (model, n, task, method, setting, json.dumps(fields, sort_keys=True))
        old = [r for r in done if r["method"] != "zeta" and (r["model"], r["n"], r["task"], r["method"], r["setting"],
                                                            json.dumps(r["fields"], sort_keys=True)) == key]
        if old or report_only:
            rows.extend(old[:1])
            return
        out, nfe, seconds = sample(den, task, truth, method, fields)
        rows.append({"model": model, "n": n, "task": task, "method": method, "setting": setting, "nfe": nfe,
                     "seconds_per_item": seconds, "fields": fields, **scores(task, out, truth)})
        with journal.open("a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        r = rows[-1]
        print(f"{model} {task} {method} {setting}: {r['psnr_hole']:.2f} ± {r['psnr_ci']:.2f} dB at {nfe:.0f} NFE",
              file=sys.stderr, flush=True)

    for task in tasks:
        for setting, fields in newton_settings(model, task).items():
            add(task, "newton", setting, fields)
        add(task, "ddim", "unconstrained S20", {"steps": 20})
        zetas = [r["zeta"] for r in done if (r["model"], r["task"], r["method"]) == (model, task, "zeta")]
        if report_only and not zetas:
            continue
        zeta = zetas[0] if zetas else tune_zeta(den, model, task)
        if not zetas:
            with journal.open("a") as f:
                f.write(json.dumps({"model": model, "n": n, "task": task, "method": "zeta", "setting": "",
                                    "zeta": zeta}) + "\n")
        for budget in BUDGETS[model]["dps"]:
            add(task, "dps", f"S{budget} ζ={zeta:g}", {"steps": budget, "dps_step_size": zeta})
        if not (task == "sr2" or (task == "pixels" and den.is_latent)):
            for budget in BUDGETS[model]["replacement"]:
                add(task, "replacement", f"S{budget}", {"steps": budget})
    return rows


def _label(setting: str) -> str:
    """DPS rows of one budget share a line: their ζ is tuned per task (given in the JSON)."""
    return re.sub(r" ζ=\S+", " (ζ tuned per task)", setting)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"### Quality vs cost ({meta['n']} held-out items per model; hole PSNR in dB, whole image for SR)", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        tasks = list(dict.fromkeys(r["task"] for r in rows if r["model"] == model))
        lines += [f"**{model}**", "", "| method | setting | NFE | " + " | ".join(tasks) + " |",
                  "|---|---|---|" + "---|" * len(tasks)]
        keys = list(dict.fromkeys((r["method"], _label(r["setting"])) for r in rows if r["model"] == model))
        for method, setting in keys:
            cells, nfes = [], set()
            for task in tasks:
                hit = [r for r in rows if (r["model"], r["task"], r["method"], _label(r["setting"])) ==
                       (model, task, method, setting)]
                cells.append(f"{hit[0]['psnr_hole']:.2f} ± {hit[0]['psnr_ci']:.2f}" if hit else "n/a")
                nfes.update(round(r["nfe"]) for r in hit)
            nfe = "/".join(map(str, sorted(nfes)))
            lines.append(f"| {method} | {setting} | {nfe} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["model"], r["task"]) for r in rows))
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(4 * ((len(panels) + 1) // 2), 7), squeeze=False)
    for ax, (model, task) in zip(axes.flat, panels, strict=False):
        for method, marker in (("newton", "o"), ("dps", "s"), ("replacement", "^"), ("ddim", "x")):
            pts = sorted((r["nfe"], r["psnr_hole"]) for r in rows
                         if (r["model"], r["task"], r["method"]) == (model, task, method))
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=marker, linestyle="-" if method != "newton" else "",
                        label=method)
        for r in rows:
            if (r["model"], r["task"]) == (model, task) and r["setting"] in ("paper", "fast", "cg"):
                ax.annotate(r["setting"], (r["nfe"], r["psnr_hole"]), fontsize=8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks([20, 30, 50, 70, 110, 220, 420])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(f"{model}: {task}")
        ax.set_xlabel("UNet forwards per item")
        ax.set_ylabel("hole PSNR (dB)")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,photo")
    parser.add_argument("--n", type=int, default=0, help="items per model (default: 64 digits, 8 photo crops)")
    parser.add_argument("--tasks", default="", help="comma-separated subset of each model's tasks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="tables and figure from the journal alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, counts = [], {}
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        n = args.n or (64 if model == "digits" else 8)
        tasks = [t for t in TASKS[model] if not args.tasks or t in args.tasks.split(",")]
        rows += run_model(model, tasks, n, args.out / "frontier.jsonl", args.report_only)
        counts[model] = n
    meta = {"n": counts}
    (args.out / "frontier.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    md = markdown(rows, {"n": ", ".join(f"{k}: {v}" for k, v in counts.items())})
    (args.out / "frontier.md").write_text(md)
    if rows:
        figure(rows, args.out / "frontier.png")
    print(md)


if __name__ == "__main__":
    main()
