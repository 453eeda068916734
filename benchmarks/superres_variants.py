"""Super-resolution: the decoder-gradient variant vs the decoder-free (VAE forwards only) variant.

    python benchmarks/superres_variants.py [--model tiny] [--size 32] [--scale 4] [--n 4]

Same images, seeds and sampler settings (S, K=10, lr=0.1) for both variants, run side by side:
seconds per item, low-res residual before/after (RMS of A(D(x̂0)) − y), and peak memory of the
error computation (CUDA: max allocated; CPU: not separable in one process, so not reported).
With the built-in tiny model (random weights) the residuals say how well each variant drives the
constraint through *this* VAE, not image quality. Writes benchmarks/results/superres_variants.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import skimage.data
    import torch
    from PIL import Image

    from fcs import Items, SamplerConfig, load_denoiser
    from fcs.tasks import superres

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--size", type=int, default=32, help="low-res side")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    den = load_denoiser(args.model, device=args.device)
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    lows = [np.asarray(Image.fromarray(photos[i % 4]).resize((args.size, args.size), Image.BICUBIC))
            for i in range(args.n)]
    config = SamplerConfig(steps=args.steps, newton_steps=10, lr=0.1)
    rows = []
    for variant in ("decoder", "encoder"):
        if den.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        res = superres.run(den, Items(lows), config, scale=args.scale, variant=variant)
        seconds = (time.perf_counter() - start) / args.n
        rows.append({
            "variant": variant, "seconds_per_item": seconds,
            "residual_init": float(np.mean([r.residual_init for r in res])),
            "residual_final": float(np.mean([r.residual_final for r in res])),
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if den.device.type == "cuda" else None,
        })
    RESULTS.mkdir(exist_ok=True)
    meta = {"model": args.model, "device": str(den.device), "low_res": args.size, "scale": args.scale, "n": args.n,
            "steps": args.steps, "newton_steps": 10, "lr": 0.1}
    (RESULTS / "superres_variants.json").write_text(json.dumps({"config": meta, "rows": rows}, indent=2))
    lines = [f"### Super-resolution ×{args.scale} variants ({args.model}, {args.size}² → {args.size * args.scale}², "
             f"{den.device}, S={args.steps}, K=10, {args.n} photos)", "",
             "| variant | s/item | low-res residual before | after | after / before | peak MB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] else "n/a (CPU)"
        lines.append(f"| {r['variant']} | {r['seconds_per_item']:.2f} | {r['residual_init']:.4f} | "
                     f"{r['residual_final']:.4f} | {r['residual_final'] / r['residual_init']:.3f} | {peak} |")
    md = "\n".join(lines) + "\n"
    (RESULTS / "superres_variants.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
