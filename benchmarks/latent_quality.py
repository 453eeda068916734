"""Quality in latent space: the trained ``photo`` model on held-out photo crops, every method side by side.

    python benchmarks/latent_quality.py                     # 16 held-out 128² crops, all tasks and methods
    python benchmarks/latent_quality.py --n 4 --tasks box   # quicker

Tasks: box, free-form strokes and half-image inpainting; ×2 and ×4 super-resolution (decoder-gradient
and decoder-free variants); layer extraction on photo composites (α IoU). Methods: inexact Newton
(K = 1, 3, 5; SR also K = 10, the paper's SR setting, both variants), DPS with ζ tuned on crops of
training photos (at S and at 5×S), replacement, unconstrained DDIM, and the classical baseline
(biharmonic inpainting, bicubic upsampling), and the ``cg`` preset (the photo model's recommendation:
S = 16, K = 2 for masks; S = 20, K = 4 for super-resolution). Metrics per item, reported as mean ± 95% CI: PSNR in the
hole (whole image for SR), SSIM (whole image), known-region residual (RMS over kept pixels, or of the
downsampled output vs the low-res input, before compositing), NFE and seconds per item.
Writes benchmarks/results/latent_quality.{md,json} and latent_quality.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from layers_iou import iou  # noqa: E402

RESULTS = HERE / "results"
INPAINT = ("box", "strokes", "half")
SR = ("sr2", "sr4")
TASKS = (*INPAINT, *SR, "layers")
METHODS = ("cg", "newton-k1", "newton-k3", "newton-k5", "newton-k10", "newton-k10-enc", "dps", "dps-5x", "replacement",
           "unconstrained", "classical")
ZETAS = (1.0, 3.0, 10.0, 30.0)


def applies(method: str, task: str) -> bool:
    if task == "layers":
        return False
    if method in ("newton-k10", "newton-k10-enc"):
        return task in SR
    return not (method == "replacement" and task in SR)


def masks_for(task: str, n: int, size: int) -> list[np.ndarray]:
    from jobs.demo import make_mask

    return [(make_mask(task, size, seed=i) > 127).astype(np.float32) for i in range(n)]


def config_for(method: str, task: str, steps: int, zeta: float = 1.0):
    from fcs import SamplerConfig

    if method == "cg":  # the photo model's recommended preset (S16 K2; S20 K4 through the decoder)
        from fcs.presets import with_preset

        return with_preset(SamplerConfig(composite=False), "cg", through_decoder=task in SR)
    if method.startswith("newton"):
        k = int(method.split("-k")[1].split("-")[0])
        return SamplerConfig(steps=steps, newton_steps=k, lr=0.1 if task in SR else None, composite=False)
    if method.startswith("dps"):
        return SamplerConfig(method="dps", steps=steps * (5 if method == "dps-5x" else 1), dps_step_size=zeta,
                             composite=False)
    return SamplerConfig(method="ddim" if method == "unconstrained" else method, steps=steps, composite=False)


def restore(den, method: str, task: str, truth: np.ndarray, steps: int, zeta: float = 1.0) -> tuple[list, list]:
    """Outputs (uint8 arrays) and NFE per item of ``method`` on ``task`` for uint8 (N, H, W, 3) ``truth``."""
    from fcs import Items, inpaint
    from fcs.tasks import superres

    n, size = len(truth), truth.shape[1]
    if task in SR:
        scale = int(task[2:])
        low = [downscale(t, scale) for t in truth]
        if method == "classical":
            from PIL import Image

            return [np.asarray(Image.fromarray(x).resize((size, size), Image.BICUBIC)) for x in low], [0] * n
        variant = "encoder" if method.endswith("-enc") else "decoder"
        res = superres.run(den, Items(low), config_for(method, task, steps, zeta), scale=scale, variant=variant)
        return [r.image for r in res], [r.nfe for r in res]
    masks = masks_for(task, n, size)
    if method == "classical":
        from skimage.restoration import inpaint_biharmonic

        pairs = zip(truth, masks, strict=True)
        filled = [inpaint_biharmonic(t / 255.0, m.astype(bool), channel_axis=2) for t, m in pairs]
        out = [np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8) for f in filled]
        return out, [0] * n
    res = inpaint(den, Items(list(truth), masks), config_for(method, task, steps, zeta))
    return [r.image for r in res], [r.nfe for r in res]


def downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """The low-res input: antialiased bicubic, the same operator A as the SR constraint."""
    from fcs.constraints import downsample

    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    return (downsample(x, scale)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def item_metrics(task: str, truth: np.ndarray, out: list[np.ndarray]) -> dict[str, list[float]]:
    from skimage.metrics import structural_similarity

    from fcs.metrics import psnr

    n = len(truth)
    if task in SR:
        holes = [np.ones(truth.shape[1:3], bool)] * n
    else:
        holes = [m > 0.5 for m in masks_for(task, n, truth.shape[1])]
    rows: dict[str, list[float]] = {"psnr_hole": [], "ssim": [], "known_residual": []}
    for t, o, hole in zip(truth, out, holes, strict=True):
        rows["psnr_hole"].append(psnr(t, o, hole))
        rows["ssim"].append(float(structural_similarity(t, o, channel_axis=2, data_range=255)))
        if task in SR:
            scale = int(task[2:])
            diff = downscale(o, scale).astype(float) - downscale(t, scale).astype(float)
        else:
            diff = (o.astype(float) - t.astype(float))[~hole]
        rows["known_residual"].append(float(np.sqrt(np.mean((diff / 255) ** 2))))
    return rows


def ci95(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def tune_zeta(den, method: str, task: str, steps: int, grid: tuple[float, ...]) -> float:
    """ζ with the best hole PSNR on 4 crops of *training* photos (never the held-out ones)."""
    from fcs.photos import TRAIN, center_square, load_photo

    val = np.stack([center_square(load_photo(name), 128) for name in TRAIN[:4]])
    scores = {}
    for z in grid:
        out, _ = restore(den, method, task, val, steps, z)
        scores[z] = float(np.nanmean(item_metrics(task, val, out)["psnr_hole"]))
    return max(scores, key=scores.get)


def layers_rows(den, n: int, steps: int) -> list[dict]:
    """Layer extraction on composites of two held-out crops: α a disk, the rough region its box + margin."""
    from fcs import SamplerConfig
    from fcs.photos import held_out_crops
    from fcs.tasks.layers import extract_layers

    crops = held_out_crops(128, per_photo=2, seed=1)
    size, rows = 128, []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        back, fore = crops[(2 * i) % len(crops)], crops[(2 * i + 3) % len(crops)]
        cy, cx, r = 64 + 10 * (i % 3 - 1), 64 + 10 * ((i // 3) % 3 - 1), 28
        alpha = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(float)
        x = np.round(alpha[..., None] * fore + (1 - alpha[..., None]) * back).astype(np.uint8)
        rough = np.zeros((size, size))
        rough[cy - r - 8:cy + r + 9, cx - r - 8:cx + r + 9] = 1
        start = time.perf_counter()
        layers = extract_layers(den, x, [rough], SamplerConfig(steps=steps, newton_steps=3), rounds=2, samples=4,
                                seed=i)
        rows.append({"iou_estimate": iou(layers.alpha, alpha), "iou_rough": iou(rough, alpha), "nfe": layers.nfe,
                     "seconds": time.perf_counter() - start})
    return rows


def main() -> None:
    from fcs import load_denoiser
    from fcs.photos import held_out_crops

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="photo")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--layers-n", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="tables and figure from the journal alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    den = load_denoiser(args.model, device="cpu", dtype="float32")
    truth = held_out_crops(128, per_photo=4)[: args.n]
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    journal = RESULTS / "latent_quality.jsonl"  # one row per line as measured: a rerun resumes from it
    RESULTS.mkdir(exist_ok=True)
    done = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    rows, shown = [], {}

    def record(row: dict, out: list | None = None) -> None:
        if out is not None:
            row["shown"] = [png_b64(o) for o in out[:3]]
        rows.append(row)
        with journal.open("a") as f:
            f.write(json.dumps(row) + "\n")

    for task in tasks:
        old = {r["method"]: r for r in done if r["task"] == task and r["n"] == (args.layers_n if task == "layers"
                                                                                 else len(truth))}
        if task == "layers":
            if "newton-k3" in old or args.report_only:
                rows.extend([old["newton-k3"]] if "newton-k3" in old else [])
                continue
            lay = layers_rows(den, args.layers_n, args.steps)
            record({"task": "layers", "method": "newton-k3", "n": len(lay),
                    **{k: ci95([r[k] for r in lay]) for k in ("iou_estimate", "iou_rough", "nfe", "seconds")}})
            print(f"layers: IoU {rows[-1]['iou_estimate'][0]:.3f}", file=sys.stderr)
            continue
        zeta = old["dps"]["dps_step"] if "dps" in old else None
        for method in methods:
            if not applies(method, task):
                continue
            if method in old:
                rows.append(old[method])
                shown.setdefault(task, {})[method] = [png_array(b) for b in old[method]["shown"]]
                continue
            if args.report_only:
                continue
            if method == "dps":
                zeta = tune_zeta(den, "dps", task, args.steps, ZETAS)
            z = None
            if method == "dps-5x":
                base = zeta or tune_zeta(den, "dps", task, args.steps, ZETAS)
                z = tune_zeta(den, "dps-5x", task, args.steps, (base / 3, base, base * 3))
            elif method == "dps":
                z = zeta
            start = time.perf_counter()
            out, nfe = restore(den, method, task, truth, args.steps, z or 1.0)
            seconds = (time.perf_counter() - start) / len(truth)
            m = item_metrics(task, truth, out)
            record({"task": task, "method": method, "n": len(truth), "dps_step": z, "nfe": float(np.mean(nfe)),
                    "seconds_per_item": seconds, **{k: ci95(v) for k, v in m.items()}}, out)
            shown.setdefault(task, {})[method] = out[:3]
            print(f"{task} {method}: hole PSNR {rows[-1]['psnr_hole'][0]:.2f} dB", file=sys.stderr)
    rows = [{k: v for k, v in r.items() if k != "shown"} for r in rows]
    RESULTS.mkdir(exist_ok=True)
    meta = {"model": args.model, "n": len(truth), "steps": args.steps, "size": 128}
    (RESULTS / "latent_quality.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    md = markdown(rows, meta)
    (RESULTS / "latent_quality.md").write_text(md)
    if shown:
        figure(shown, truth[:3], RESULTS / "latent_quality.png")
    print(md)


def png_b64(img: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_array(text: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def pivot(rows: list[dict], key: str = "psnr_hole") -> list[str]:
    methods = [m for m in METHODS if any(r["method"] == m and r["task"] != "layers" for r in rows)]
    lines = ["| task | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for task in TASKS:
        cells = {r["method"]: r[key] for r in rows if r["task"] == task and key in r}
        if cells:
            lines.append(f"| {task} | " + " | ".join(f"{cells[m][0]:.2f} ± {cells[m][1]:.2f}" if m in cells else "n/a"
                                                    for m in methods) + " |")
    return lines


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"### Latent quality: `{meta['model']}` model, {meta['n']} held-out {meta['size']}² photo crops, "
             f"S={meta['steps']}", "", "Hole PSNR (dB, whole image for SR), mean ± 95% CI:", "", *pivot(rows), "",
             "| task | method | hole PSNR | SSIM | known residual | NFE | s/item |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "layers":
            continue
        name = r['method'] + (f" (ζ={r['dps_step']:.3g})" if r.get('dps_step') else '')
        lines.append(f"| {r['task']} | {name} | {r['psnr_hole'][0]:.2f} ± {r['psnr_hole'][1]:.2f} | "
                     f"{r['ssim'][0]:.3f} ± {r['ssim'][1]:.3f} | {r['known_residual'][0]:.4f} | {r['nfe']:.0f} | "
                     f"{r['seconds_per_item']:.2f} |")
    for r in rows:
        if r["task"] == "layers":
            lines += ["", f"Layers on {r['n']} photo composites (disk α, rough box input; Newton K=3, 2 rounds × 4 "
                      f"samples): α IoU {r['iou_estimate'][0]:.3f} ± {r['iou_estimate'][1]:.3f} vs "
                      f"{r['iou_rough'][0]:.3f} for the rough input region; {r['nfe'][0]:.0f} UNet forwards and "
                      f"{r['seconds'][0]:.0f} s per image."]
    return "\n".join(lines) + "\n"


def figure(shown: dict, truth: np.ndarray, path: Path) -> None:
    from PIL import Image

    tasks = list(shown)
    methods = [m for m in METHODS if any(m in shown[t] for t in tasks)]
    tile, pad = 128, 2
    sheet = Image.new("RGB", ((tile + pad) * (len(methods) + 1), (tile + pad) * len(tasks) * len(truth)), "white")
    for i, task in enumerate(tasks):
        for k, t in enumerate(truth):
            y = (i * len(truth) + k) * (tile + pad)
            sheet.paste(Image.fromarray(t), (0, y))
            for j, m in enumerate(methods):
                if m in shown[task]:
                    sheet.paste(Image.fromarray(shown[task][m][k]), ((j + 1) * (tile + pad), y))
    sheet.save(path)
    (path.with_suffix(".txt")).write_text("rows: " + ", ".join(f"{t} ×{len(truth)}" for t in tasks)
                                          + "\ncolumns: truth, " + ", ".join(methods) + "\n")


if __name__ == "__main__":
    main()
