"""Layer extraction on synthetic digit composites with the trained reference model: IoU of the
estimated alpha against the true one, next to the IoU of the rough region given as input.

    python benchmarks/layers_iou.py [--n 16] [--rounds 3] [--samples 4] [--presets cg,calibrated]

Composite: x = α⊙F + (1−α)⊙B with B a held-out digit, F another held-out digit on a grey card
(0.5 + 0.5·digit, so the foreground differs from the black background), and α a disk or a box
(alternating). The rough region is the bounding box of α grown by 2 px. Settings, side by side on the
same items and seeds: the paper's step at S = --steps, K = 3 (the figure's), then each of --presets.
Writes benchmarks/results/layers_iou.{md,json} and docs/layers.png (a few examples, first setting).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from digits import held_out_digits  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def composites(n: int) -> list[dict]:
    digits = held_out_digits(2 * n)[:, 0].numpy()
    yy, xx = np.mgrid[:16, :16]
    items = []
    for i in range(n):
        if i % 2 == 0:
            cy, cx, r = 6 + i % 4, 7 + (i // 2) % 3, 4.5
            alpha = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float64)
        else:
            alpha = np.zeros((16, 16))
            y0, x0 = 2 + i % 5, 3 + (i // 3) % 5
            alpha[y0:y0 + 8, x0:x0 + 7] = 1
        back, fore = digits[2 * i], 0.5 + 0.5 * digits[2 * i + 1]
        x = alpha * fore + (1 - alpha) * back
        ys, xs = np.nonzero(alpha)
        rough = np.zeros((16, 16))
        rough[max(0, ys.min() - 2): ys.max() + 3, max(0, xs.min() - 2): xs.max() + 3] = 1
        rgb = np.repeat(np.round(x * 255).astype(np.uint8)[..., None], 3, axis=2)
        items.append({"x": rgb, "alpha": alpha, "rough": rough, "shape": "disk" if i % 2 == 0 else "box"})
    return items


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max(1, (a | b).sum()))


def measure(den, items: list[dict], config, rounds: int, samples: int) -> tuple[list[dict], list]:
    from fcs.tasks.layers import extract_layers, recompose

    rows, shown = [], []
    for i, item in enumerate(items):
        layers = extract_layers(den, item["x"], [item["rough"]], config, rounds=rounds, samples=samples,
                                margin=0, seed=i)
        rows.append({"shape": item["shape"], "iou_estimate": iou(layers.alpha, item["alpha"]),
                     "iou_rough": iou(item["rough"], item["alpha"]), "nfe": layers.nfe, "rounds": layers.rounds,
                     "recon_max_err": float(np.abs(recompose(layers) - item["x"] / 255.0).max())})
        if len(shown) < 4:
            shown.append((item, layers))
    return rows, shown


def main() -> None:
    from fcs import SamplerConfig, load_denoiser
    from fcs.presets import with_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--presets", default="cg,calibrated", help="comma-separated presets run beside it")
    args = parser.parse_args()
    den = load_denoiser(HERE / "reference_model", device="cpu", dtype="float32")
    settings = {f"paper's step S{args.steps} K3": SamplerConfig(steps=args.steps, newton_steps=3)}
    settings |= {f"`{name}` preset": with_preset(SamplerConfig(), name)
                 for name in filter(None, args.presets.split(","))}
    items = composites(args.n)
    results, figure = {}, None
    for label, config in settings.items():
        results[label], shown = measure(den, items, config, args.rounds, args.samples)
        figure = figure or shown
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "layers_iou.json").write_text(json.dumps({"config": vars(args), "settings": {
        label: {"summary": {k: float(np.mean([r[k] for r in rows])) for k in
                            ("iou_estimate", "iou_rough", "nfe", "recon_max_err")}, "rows": rows}
        for label, rows in results.items()}}, indent=2))
    lines = [f"### Layer extraction on {args.n} synthetic digit composites (reference model, "
             f"{args.rounds} rounds × {args.samples} samples)", "",
             "| setting | α shape | items | IoU of estimated α | IoU of rough input region "
             "| UNet forwards / image | max recon. error |",
             "|---|---|---|---|---|---|---|"]
    for label, rows in results.items():
        for shape in ("disk", "box", "all"):
            sel = [r for r in rows if shape == "all" or r["shape"] == shape]
            lines.append(f"| {label} | {shape} | {len(sel)} | {np.mean([r['iou_estimate'] for r in sel]):.3f} | "
                         f"{np.mean([r['iou_rough'] for r in sel]):.3f} | {np.mean([r['nfe'] for r in sel]):.0f} | "
                         f"{np.max([r['recon_max_err'] for r in sel]):.4f} |")
    md = "\n".join(lines) + "\n"
    (RESULTS / "layers_iou.md").write_text(md)
    _figure(figure, HERE.parent / "docs" / "layers.png")
    print(md)


def _figure(shown, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ["input x", "rough region", "true α", "estimated α", "background B", "foreground F·α"]
    fig, axes = plt.subplots(len(shown), len(titles), figsize=(1.7 * len(titles), 1.8 * len(shown)))
    for i, (item, layers) in enumerate(shown):
        fore = layers.foreground[..., :3] / 255.0 * layers.alpha[..., None]
        panels = [item["x"], item["rough"], item["alpha"], layers.alpha, layers.background, fore]
        for j, img in enumerate(panels):
            axes[i, j].imshow(img, cmap="gray", vmin=0, vmax=1 if np.asarray(img).dtype != np.uint8 else 255)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(titles[j], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
