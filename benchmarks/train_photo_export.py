"""The export phase of train_photo_model.py: the pipeline folder, its model card, curves and figures."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from fcs import photos
from fcs.tiny import SD15_SCHEDULER, _write_model_index

log = logging.getLogger("train_photo_model")

# the first photo model (commit 1745083: no colour augmentation, 15 photos, VAE blocks (32, 64, 96), 28 min),
# measured as held_out_table measures (issue 21)
PREVIOUS = {"chelsea": (27.05, [0.5, -1.1, 0.8]), "coffee": (23.80, [2.8, -2.3, 8.8]),
            "rocket": (23.69, [-9.7, 13.7, -11.0]), "grace_hopper": (20.57, [-2.8, 5.3, -8.5])}


def vae_psnr(vae, crops: np.ndarray) -> list[float]:
    """PSNR (dB, images in [0, 1]) of posterior-mean reconstructions of uint8 (N, H, W, 3) crops."""
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    out = []
    with torch.no_grad():
        for k in range(0, len(x), 8):
            batch = x[k:k + 8]
            recon = vae.decode(vae.encode(batch).latent_dist.mean).sample.clamp(-1, 1)
            mse = ((recon - batch) / 2).pow(2).mean(dim=(1, 2, 3))
            out += (-10 * torch.log10(mse)).tolist()
    return out


def export(args, vae_phase, unet_phase, scaling: float, text: Path) -> None:
    from diffusers import DDIMScheduler
    from train_photo_model import held_out_table

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    vae, unet = vae_phase.ema, unet_phase.ema
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    shutil.copytree(text / "text_encoder", out / "text_encoder")
    shutil.copytree(text / "tokenizer", out / "tokenizer")
    DDIMScheduler(**SD15_SCHEDULER).save_pretrained(out / "scheduler")
    _write_model_index(out, "StableDiffusionPipeline")

    held = photos.held_out_crops(128, per_photo=4)
    psnr = vae_psnr(vae.eval(), held)
    log.info("VAE reconstruction PSNR on %d held-out crops: %.2f dB", len(psnr), np.mean(psnr))
    table = held_out_table(vae)
    log.info("VAE round trip of the held-out photos (128² centre squares): %s", json.dumps(table))
    stats = {
        "photos": list(photos.TRAIN), "drawings_vae_only": list(photos.GRAPHICS), "held_out": list(photos.HELD_OUT),
        "vae": {"params_m": _params(vae), "blocks": list(vae.config.block_out_channels),
                "norm_groups": vae.config.norm_num_groups, "steps": vae_phase.step,
                "minutes": vae_phase.elapsed / 60, "batch": args.vae_batch, "lr": args.vae_lr,
                "kl_weight": args.kl_weight, "augment": args.vae_augment, "colour_weight": args.colour_weight,
                "colour_loss_from_step": vae_phase.meta.get("colour_loss_from_step"),
                "fields": args.vae_fields, "shade": args.vae_shade,
                "fields_and_shade_from_step": vae_phase.meta.get("fields_and_shade_from_step"),
                "final_loss": float(np.mean(vae_phase.losses[-100:])), "evals": vae_phase.evals},
        "unet": {"params_m": _params(unet), "norm_groups": unet.config.norm_num_groups, "steps": unet_phase.step, "minutes": unet_phase.elapsed / 60,
                 "batch": args.unet_batch, "lr": args.unet_lr, "bank": args.bank, "augment": args.unet_augment,
                 "final_loss": float(np.mean(unet_phase.losses[-100:]))},
        "scaling_factor": scaling,
        "held_out_psnr_db": {"mean": float(np.mean(psnr)), "min": float(np.min(psnr)), "n": len(psnr)},
        "held_out_round_trip": table,
        "seed": args.seed,
    }
    (out / "training.json").write_text(json.dumps(stats, indent=2))
    _curves(vae_phase.losses, unet_phase.losses, out / "loss_curves.png")
    _card(out, stats)
    _samples(out, held, out / "samples.png")
    log.info("wrote %s", out)


def _params(model) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 2)


def _curves(vae_losses: list[float], unet_losses: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, losses, title in ((axes[0], vae_losses, "VAE: MSE + L1/2 + KL"), (axes[1], unet_losses, "UNet: ε MSE")):
        window = 50
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window, smooth)
        ax.set(xlabel="step", yscale="log", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _samples(folder: Path, held: np.ndarray, path: Path, n: int = 8) -> None:
    """Unconstrained DDIM samples (50 steps, empty prompt) above ``n`` real held-out crops."""
    from PIL import Image

    from fcs import Items, SamplerConfig, inpaint, load_denoiser

    den = load_denoiser(folder, device="cpu", dtype="float32")
    blank = [np.zeros((128, 128, 3), np.uint8)] * n
    results = inpaint(den, Items(blank, [np.ones((128, 128), np.float32)] * n),
                      SamplerConfig(method="ddim", steps=50, composite=False))
    top = np.concatenate([r.image for r in results], axis=1)
    bottom = np.concatenate(list(held[::max(1, len(held) // n)][:n]), axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(path)


def _shift(v: list[float]) -> str:
    return ", ".join(f"{x:+.1f}".replace("-", "−") for x in v)


def _card(out: Path, s: dict) -> None:
    train = ", ".join(f"`{n}`" for n in photos.TRAIN)
    drawings = ", ".join(f"`{n}`" for n in photos.GRAPHICS)
    held = ", ".join(f"`{n}`" for n in photos.HELD_OUT)
    sources = "; ".join(f"`{n}`: {v}" for n, v in photos.SOURCES.items() if n in photos.TRAIN + photos.GRAPHICS)
    v, u = s["vae"], s["unet"]
    colour = ""
    start = v.get("fields_and_shade_from_step") or 0
    fields_note = f"; from step {start} on, added when the run was resumed" if start else ""
    if v.get("colour_weight"):
        start = v.get("colour_loss_from_step") or 0
        colour = (f" + {v['colour_weight']:g}·MSE of 8×8 means (a cast over an area weighs more than the same"
                  f" error in detail{f'; from step {start} on, added when the run was resumed' if start else ''};"
                  " no GAN, no perceptual loss)")
    rows = "\n".join(
        f"| {n} | **{r['psnr_db']:.2f} dB** | {_shift(r['shift'])} | {PREVIOUS[n][0]:.2f} dB | {_shift(PREVIOUS[n][1])} |"
        for n, r in s["held_out_round_trip"].items())
    met = [n for n, r in s["held_out_round_trip"].items() if r["psnr_db"] >= 25 and max(map(abs, r["shift"])) <= 4]
    short = [n for n in s["held_out_round_trip"] if n not in met]
    worst = max(max(map(abs, r["shift"])) for r in s["held_out_round_trip"].values())
    acceptance = (f"Issue 21 asks for at least 25 dB and every channel's mean shift within ±4: met by "
                  f"{', '.join(met) or 'none'}; not by {', '.join(short) or 'none'}"
                  + (" (4 latent channels at ×4 and about an hour of CPU training did not get there; the largest"
                     f" mean shift of the four is {worst:.1f} levels)." if short else "."))
    evals = "\n".join(
        f"| {e['step']} | {e['minutes']:.0f} | {np.mean([r['psnr_db'] for r in e.values() if isinstance(r, dict)]):.2f} dB"
        f" | {min(r['psnr_db'] for r in e.values() if isinstance(r, dict)):.2f} dB"
        f" | {max(max(abs(x) for x in r['shift']) for r in e.values() if isinstance(r, dict)):.1f} |"
        for e in v["evals"])
    (out / "README.md").write_text(f"""# fcs `photo`: a small latent diffusion model trained on package photos

Stable Diffusion layout (`StableDiffusionPipeline`: vae/, unet/, text_encoder/, tokenizer/,
scheduler/; safetensors only), loaded by `--model photo` through `DiffusionPipeline.from_pretrained`.
Trained by `python benchmarks/train_photo_model.py` (CPU, under `nice`, seed {s['seed']}); it
exists because Stable Diffusion weights cannot be downloaded where this project is built and tested.

## Data
- Photos ({len(photos.TRAIN)}, shipped in installed packages; the VAE and the UNet): {train}.
  Grey photos are repeated to RGB.
- Drawings (VAE only, for saturated colours, flat areas and sharp edges): {drawings}.
- Held out (whole photos, never seen in training): {held} (`grace_hopper` from matplotlib). The demo,
  the latent quality benchmark and the tests use these.
- Sources: scikit-image `data` unless noted; {sources}.
- Crops: random squares with sides log-uniform between the crop size and the whole short side (several
  scales), resized with antialiasing, random horizontal flips; colour photos are drawn 3× as often as
  grey ones, drawings half as often as grey photos.
- Colour augmentation (on {v['augment']:.0%} of the VAE's crops, {u['augment']:.0%} of the UNet's), so the models learn colour
  and tone rather than a palette: grey photos tinted (a random dark → light duotone, p 0.7), channel
  permutation (p 0.25), hue rotation by a uniform angle in YIQ (p 0.5), saturation ×0.35–1.8 (p 0.7),
  white balance (per-channel gains ×0.8–1.25, p 0.5), contrast ×0.65–1.5, brightness ±0.15 and gamma
  0.67–1.5 (each p 0.5).
- VAE only: a coloured shade (per-channel gains uniform in 0.25–1, p {v['shade']:g} of the augmented crops) and
  {v['fields']:.0%} of the crops replaced by smooth colour fields (a gradient between two colours drawn
  uniformly from the RGB cube, faint smooth noise), for dark saturated colours that photos hardly have
  (a dark-blue sky decoded teal without them){fields_note}.

## Parts
- VAE: `AutoencoderKL`, blocks {tuple(v['blocks'])}, {v['norm_groups']} GroupNorm groups, ×4 downsampling, 4 latent
  channels, {v['params_m']} M parameters; `scaling_factor` = 1 / std of the latents of 256 training crops = {s['scaling_factor']:.4f}.
  {v['steps']} steps, batch {v['batch']} of 64² crops, AdamW lr {v['lr']} (cosine to 1/10), loss MSE + L1/2 +
  {v['kl_weight']:g}·KL{colour}, {v['minutes']:.1f} min.
- UNet: `UNet2DConditionModel`, blocks (32, 64, 128), {u['norm_groups']} GroupNorm groups, cross-attention at the 8×8
  level, ε-prediction, {u['params_m']} M parameters, trained on this VAE's latents; {u['steps']} steps, batch {u['batch']} of 32² latents (128² crops
  of the photos; a bank of {u['bank']} crops encoded once, latents sampled from each posterior), AdamW lr {u['lr']},
  {u['minutes']:.1f} min. Stable Diffusion 1.5's noise schedule (scaled-linear β 0.00085..0.012, 1000 steps).
- Text encoder and tokenizer: the tiny `CLIPTextModel` (hidden size 32) and byte-level tokenizer of
  `fcs.tiny`, **fixed random weights**: the UNet was trained on the empty prompt's embedding only, so
  prompts do nothing; every fcs task uses the empty prompt.
- Weights are EMA (decay 0.999) of the training weights. Loss curves: `loss_curves.png`; numbers:
  `training.json`. Wall time: {v['minutes']:.1f} + {u['minutes']:.1f} min of training steps (checkpoints, evaluations,
  the latent bank and the export not counted) on a 2-core machine shared with other work, 1 or 2 threads
  (whichever stepped faster; `nice`), so the step counts say more than the minutes.

## Quality
VAE round trip of each held-out photo (its 128² centre square, `den.decode(den.encode(x))`, posterior
mean; PSNR of the 8-bit result, mean shift per channel in 8-bit levels), next to the first photo model
(no colour augmentation, 15 photos, blocks (32, 64, 96), 16 GroupNorm groups: 2 channels per group
before the decoder's last conv, which keeps only a sign where a region is flat, so a sky that fills
most of a photo decoded as a palette colour):

| photo | PSNR | mean shift (R, G, B) | first model | first model's shift |
|---|---|---|---|---|
{rows}

{acceptance}

The same table during VAE training (EMA weights; mean and min PSNR over the four, largest |shift|):

| step | minutes | mean PSNR | min PSNR | max \\|shift\\| |
|---|---|---|---|---|
{evals}

- VAE reconstruction PSNR on {s['held_out_psnr_db']['n']} held-out 128² crops (centre squares and random crops):
  **{s['held_out_psnr_db']['mean']:.2f} dB** mean (min {s['held_out_psnr_db']['min']:.2f} dB).
- `samples.png`: top, 8 unconstrained samples (50 DDIM steps); bottom, real held-out crops.

## Limits
- Made for 128×128 images (32×32 latents); other multiples of 16 run, larger ones drift from what it
  saw. Its prior is the textures of {len(photos.TRAIN)} photos in many colours: no objects, faces or text it can
  draw on its own; it fills holes plausibly when the surroundings constrain them, and unconstrained
  samples are texture collages, not scenes.
""")
