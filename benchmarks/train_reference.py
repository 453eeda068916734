"""Train the reference pixel-space diffusion model on scikit-learn's handwritten digits.

    python benchmarks/train_reference.py --out benchmarks/reference_model --minutes 25

A diffusers UNet2DModel (epsilon prediction, 1000-step linear DDPM schedule) on 1,497 training
digits at 16×16 (300 held out, see benchmarks/digits.py). Writes safetensors weights in diffusers
layout (loadable with ``fcs.load_denoiser``), a model card and the loss curve.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
from digits import load_digits_16, split_indices

log = logging.getLogger("train_reference")


def build_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(16, 32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def train(out: Path, minutes: float, batch: int, lr: float, seed: int, max_steps: int) -> None:
    from diffusers import DDIMScheduler, DDPMScheduler

    torch.manual_seed(seed)
    images, _ = load_digits_16()
    train_idx, test_idx = split_indices()
    data = images[train_idx] * 2 - 1
    unet = build_unet()
    ema = build_unet()
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    params = sum(p.numel() for p in unet.parameters())
    log.info("training %.2f M parameters on %d digits for %.0f min", params / 1e6, len(data), minutes)
    gen = torch.Generator().manual_seed(seed)
    losses, started, step = [], time.time(), 0
    deadline = started + minutes * 60
    while time.time() < deadline and step < max_steps:
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        x0 = data[idx]
        shift = torch.randint(-1, 2, (2,), generator=gen).tolist()  # ±1 px translation
        x0 = torch.roll(x0, shifts=shift, dims=(2, 3))
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        loss = torch.nn.functional.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        frac = min(1.0, (time.time() - started) / (minutes * 60))
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        step += 1
        if step % 200 == 0:
            log.info("step %d loss %.4f (%.1f min)", step, sum(losses[-200:]) / 200, (time.time() - started) / 60)
    elapsed = (time.time() - started) / 60
    out.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(out / "unet", safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                  clip_sample=False, set_alpha_to_one=False, steps_offset=1).save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDIMPipeline", "unet": ["diffusers", "UNet2DModel"],
         "scheduler": ["diffusers", "DDIMScheduler"]},
        indent=2))
    window = 100
    curve = [sum(losses[i:i + window]) / len(losses[i:i + window]) for i in range(0, len(losses), window)]
    (out / "loss_curve.json").write_text(json.dumps({"window": window, "loss": curve}))
    _plot(curve, window, out / "loss_curve.png")
    _model_card(out, params, step, batch, lr, seed, elapsed, curve, len(train_idx), len(test_idx), minutes)
    log.info("wrote %s after %d steps (%.1f min), final loss %.4f", out, step, elapsed, curve[-1])


def _plot(curve: list[float], window: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([i * window for i in range(len(curve))], curve)
    ax.set(xlabel="step", ylabel=f"MSE (mean of {window})", yscale="log", title="reference model training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _model_card(out, params, steps, batch, lr, seed, elapsed, curve, n_train, n_test, minutes) -> None:
    (out / "README.md").write_text(f"""# fcs reference model: DDPM on handwritten digits (16×16)

- Architecture: diffusers `UNet2DModel`, 1 channel, blocks (16, 32, 64), attention at 8×8,
  {params / 1e6:.2f} M parameters; epsilon prediction; linear β schedule 1e-4..0.02, 1000 steps.
  Weights are an EMA of the training weights; safetensors only.
- Data: scikit-learn `load_digits` (UCI optical recognition of handwritten digits, 1,797 real 8×8
  scans, values 0..16), bilinearly upsampled to 16×16, scaled to [-1, 1]. Split: a permutation with
  seed {0} (`benchmarks/digits.py`); {n_train} train, last {n_test} held out (never seen in training).
- Training: {steps} steps, batch {batch}, AdamW lr {lr} (200-step warm-up, cosine to 10%), ±1 px
  random translation, seed {seed}, {elapsed:.1f} minutes wall clock on this machine.
- Loss (mean of the last 100 steps): {curve[-1]:.4f}; curve in `loss_curve.png` / `loss_curve.json`.
- Command: `python benchmarks/train_reference.py --out benchmarks/reference_model --minutes {minutes:g}`
- Purpose: a real (trained) prior for quality benchmarks and CI checks of the samplers, since
  Stable Diffusion weights cannot be downloaded in this environment. Not a general image model.
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reference_model")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--max-steps", type=int, default=10**9)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    train(args.out, args.minutes, args.batch, args.lr, args.seed, args.max_steps)


if __name__ == "__main__":
    main()
