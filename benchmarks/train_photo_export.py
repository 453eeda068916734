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
    stats = {
        "vae": {"params_m": _params(vae), "steps": vae_phase.step, "minutes": vae_phase.elapsed / 60,
                "batch": args.vae_batch, "lr": args.vae_lr, "kl_weight": args.kl_weight,
                "final_loss": float(np.mean(vae_phase.losses[-100:]))},
        "unet": {"params_m": _params(unet), "steps": unet_phase.step, "minutes": unet_phase.elapsed / 60,
                 "batch": args.unet_batch, "lr": args.unet_lr, "bank": args.bank,
                 "final_loss": float(np.mean(unet_phase.losses[-100:]))},
        "scaling_factor": scaling,
        "held_out_psnr_db": {"mean": float(np.mean(psnr)), "min": float(np.min(psnr)), "n": len(psnr)},
        "seed": args.seed,
    }
    (out / "training.json").write_text(json.dumps(stats, indent=2))
    _curves(vae_phase.losses, unet_phase.losses, out / "loss_curves.png")
    _samples(out, held, out / "samples.png")
    _card(out, stats)
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

    from fcs import SamplerConfig, inpaint, load_denoiser

    den = load_denoiser(folder, device="cpu", dtype="float32")
    blank = [np.zeros((128, 128, 3), np.uint8)] * n
    results = inpaint(den, blank, [np.ones((128, 128), np.float32)] * n, seeds=list(range(n)),
                      config=SamplerConfig(method="ddim", steps=50, composite=False))
    top = np.concatenate([r.image for r in results], axis=1)
    bottom = np.concatenate(list(held[::max(1, len(held) // n)][:n]), axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(path)


def _card(out: Path, s: dict) -> None:
    train = ", ".join(f"`{n}`" for n in photos.TRAIN)
    held = ", ".join(f"`{n}`" for n in photos.HELD_OUT)
    (out / "README.md").write_text(f"""# fcs `photo`: a small latent diffusion model trained on package photos

Stable Diffusion layout (`StableDiffusionPipeline`: vae/, unet/, text_encoder/, tokenizer/,
scheduler/; safetensors only), loaded by `--model photo` through `DiffusionPipeline.from_pretrained`.
Trained by `python benchmarks/train_photo_model.py` (CPU, 2 threads, seed {s['seed']}); it exists
because Stable Diffusion weights cannot be downloaded where this project is built and tested.

## Data
- Training: random square crops of {len(photos.TRAIN)} photos shipped in installed packages:
  {train} (scikit-image `data`; `china`, `flower` from scikit-learn; `motorcycle` is the left view
  of scikit-image's stereo pair; grey photos repeated to RGB). Crop sides are log-uniform between
  the crop size and the whole short side (several scales), resized with antialiasing, random flips;
  colour photos are drawn 3× as often as grey ones.
- Held out (whole photos, never seen in training): {held} (`grace_hopper` from matplotlib). The demo,
  the latent quality benchmark and the tests use these.

## Parts
- VAE: `AutoencoderKL`, blocks (32, 64, 96), ×4 downsampling, 4 latent channels, {s['vae']['params_m']} M
  parameters; `scaling_factor` = 1 / std of the latents of 256 training crops = {s['scaling_factor']:.4f}.
  {s['vae']['steps']} steps, batch {s['vae']['batch']} of 64² crops, AdamW lr {s['vae']['lr']}, loss MSE + L1/2 +
  {s['vae']['kl_weight']:g}·KL (no GAN, no perceptual loss), {s['vae']['minutes']:.1f} min.
- UNet: `UNet2DConditionModel`, blocks (32, 64, 128), cross-attention at the 8×8 level, ε-prediction,
  {s['unet']['params_m']} M parameters; {s['unet']['steps']} steps, batch {s['unet']['batch']} of 32² latents (128² crops;
  a bank of {s['unet']['bank']} crops encoded once, latents sampled from each posterior), AdamW lr {s['unet']['lr']},
  {s['unet']['minutes']:.1f} min. Stable Diffusion 1.5's noise schedule (scaled-linear β 0.00085..0.012, 1000 steps).
- Text encoder and tokenizer: the tiny `CLIPTextModel` (hidden size 32) and byte-level tokenizer of
  `fcs.tiny`, **fixed random weights**: the UNet was trained on the empty prompt's embedding only, so
  prompts do nothing; every fcs task uses the empty prompt.
- Weights are EMA (decay 0.999) of the training weights. Loss curves: `loss_curves.png`; numbers:
  `training.json`.

## Quality
- VAE reconstruction PSNR on {s['held_out_psnr_db']['n']} held-out 128² crops: **{s['held_out_psnr_db']['mean']:.2f} dB** mean
  (min {s['held_out_psnr_db']['min']:.2f} dB).
- `samples.png`: top, 8 unconstrained samples (50 DDIM steps); bottom, real held-out crops.

## Limits
- Made for 128×128 images (32×32 latents); other multiples of 16 run, larger ones drift from what it
  saw. Its prior is textures and colours of 15 photos: no objects, faces or text it can draw on its
  own; it fills holes plausibly when the surroundings constrain them, and unconstrained samples are
  texture collages, not scenes.
""")
