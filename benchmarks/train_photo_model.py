"""Train the built-in ``photo`` latent diffusion model (Stable Diffusion layout) on package photos.

    python benchmarks/train_photo_model.py --vae-minutes 28 --unet-minutes 50

Three phases, each resumable from the checkpoints in ``--work`` (rerun the same command after a
stop and it goes on where it was):

1. ``vae``: an ``AutoencoderKL`` (×4 downsampling, 4 latent channels) on random square crops of the
   training photos at several scales (side from the crop size up to the whole short side), with
   flips; loss MSE + L1 + a small KL term, as an SD-style KL autoencoder without the GAN.
2. ``unet``: ``scaling_factor`` = 1 / std of the latents (as SD does), then a
   ``UNet2DConditionModel`` (ε-prediction, cross-attention on the empty prompt's embedding of a
   fixed random tiny CLIP text encoder) on the VAE's latents of 128² crops, SD 1.5's noise schedule.
3. ``export``: the EMA weights as a ``StableDiffusionPipeline`` folder (safetensors), a model card,
   loss curves, the VAE's PSNR on held-out crops and a grid of unconstrained samples next to real
   held-out crops.

Photos: ``fcs.photos.TRAIN`` for training, whole ``fcs.photos.HELD_OUT`` photos never seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fcs import photos
from fcs.tiny import SD15_SCHEDULER, write_text_encoder

log = logging.getLogger("train_photo_model")

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "fcs" / "models" / "photo"
VAE_CROP, UNET_CROP = 64, 128
COLOUR_WEIGHT = 3.0  # colour photos are drawn this much more often than grey ones


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 96), layers_per_block=1, norm_num_groups=16, sample_size=UNET_CROP,
    )


def build_unet(cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=UNET_CROP // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=16,
    )


class Crops:
    """Random square crops of the training photos at several scales, as (B, 3, s, s) in [-1, 1]."""

    def __init__(self, names: tuple[str, ...], seed: int) -> None:
        self.photos = [torch.from_numpy(photos.load_photo(n)).permute(2, 0, 1).float() / 127.5 - 1 for n in names]
        colour = [float((p[0] - p[1]).abs().mean() > 1e-3) for p in self.photos]
        weights = torch.tensor([COLOUR_WEIGHT if c else 1.0 for c in colour])
        self.weights = weights / weights.sum()
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int, size: int) -> torch.Tensor:
        idx = torch.multinomial(self.weights, batch, replacement=True, generator=self.gen)
        out = []
        for i in idx.tolist():
            img = self.photos[i]
            h, w = img.shape[1:]
            u = float(torch.rand((), generator=self.gen))
            side = int(round(math.exp(math.log(size) + u * (math.log(min(h, w)) - math.log(size)))))
            top = int(torch.randint(0, h - side + 1, (), generator=self.gen))
            left = int(torch.randint(0, w - side + 1, (), generator=self.gen))
            crop = img[None, :, top:top + side, left:left + side]
            if side != size:
                crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            if float(torch.rand((), generator=self.gen)) < 0.5:
                crop = crop.flip(-1)
            out.append(crop)
        return torch.cat(out).clamp(-1, 1)


class Phase:
    """A training loop with EMA, a time budget, cosine lr and a checkpoint it resumes from."""

    def __init__(self, name: str, model: torch.nn.Module, work: Path, lr: float, minutes: float) -> None:
        self.name, self.model, self.minutes, self.base_lr = name, model, minutes, lr
        self.ema = type(model).from_config(model.config)
        self.ema.load_state_dict(model.state_dict())
        self.ema.requires_grad_(False)
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        self.path = work / f"{name}.pt"
        self.step, self.elapsed, self.losses = 0, 0.0, []
        if self.path.exists():
            state = torch.load(self.path, weights_only=False)
            model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            self.step, self.elapsed, self.losses = state["step"], state["elapsed"], state["losses"]
            log.info("%s: resumed at step %d (%.1f min done)", name, self.step, self.elapsed / 60)

    @property
    def done(self) -> bool:
        return self.elapsed >= self.minutes * 60

    def save(self, extra: dict | None = None) -> None:
        state = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                 "step": self.step, "elapsed": self.elapsed, "losses": self.losses, **(extra or {})}
        torch.save(state, self.path.with_suffix(".tmp"))
        self.path.with_suffix(".tmp").replace(self.path)

    def run(self, loss_fn, save_every_s: float = 120.0) -> None:
        last_save = time.time()
        while not self.done:
            t0 = time.time()
            frac = self.elapsed / (self.minutes * 60)
            lr = self.base_lr * min(1.0, (self.step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for group in self.opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(self.model)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            with torch.no_grad():
                decay = min(0.999, (1 + self.step) / (10 + self.step))
                for pe, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    pe.lerp_(p, 1 - decay)
            self.losses.append(float(loss))
            self.step += 1
            self.elapsed += time.time() - t0
            if self.step % 100 == 0:
                log.info("%s step %d loss %.4f lr %.2e (%.1f / %.0f min)", self.name, self.step,
                         np.mean(self.losses[-100:]), lr, self.elapsed / 60, self.minutes)
            if time.time() - last_save > save_every_s:
                self.save()
                last_save = time.time()
        self.save()


def vae_loss(crops: Crops, batch: int, kl_weight: float):
    def loss(vae) -> torch.Tensor:
        x = crops.sample(batch, VAE_CROP)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        return F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + kl_weight * posterior.kl().mean()

    return loss


def latent_std(vae, crops: Crops, n: int = 256) -> float:
    with torch.no_grad():
        z = torch.cat([vae.encode(crops.sample(32, UNET_CROP)).latent_dist.sample() for _ in range(n // 32)])
    return float(z.std())


def latent_bank(vae, crops: Crops, n: int, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of ``n`` random 128² crops, encoded once (encoding on the fly would
    cost more than the UNet step itself on CPU)."""
    if path.exists():
        bank = torch.load(path)
        return bank["mean"], bank["std"]
    means, stds = [], []
    with torch.no_grad():
        for k in range(0, n, 32):
            dist = vae.encode(crops.sample(min(32, n - k), UNET_CROP)).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            if k % 1024 == 0:
                log.info("latent bank: %d / %d crops encoded", k, n)
    mean, std = torch.cat(means), torch.cat(stds)
    torch.save({"mean": mean, "std": std}, path)
    return mean, std


def unet_loss(bank: tuple[torch.Tensor, torch.Tensor], scaling: float, cond: torch.Tensor, batch: int, seed: int):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**{k: v for k, v in SD15_SCHEDULER.items() if k in ("num_train_timesteps", "beta_start",
                                                                                "beta_end", "beta_schedule")})
    gen = torch.Generator().manual_seed(seed + 1)

    mean, std = bank

    def loss(unet) -> torch.Tensor:
        idx = torch.randint(0, len(mean), (batch,), generator=gen)
        z = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        pred = unet(sched.add_noise(z, noise, t), t, encoder_hidden_states=cond.expand(batch, -1, -1)).sample
        return F.mse_loss(pred, noise)

    return loss


def empty_prompt_embedding(path: Path) -> torch.Tensor:
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    enc = CLIPTextModel.from_pretrained(path / "text_encoder")
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        return enc(ids)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".train_photo")
    parser.add_argument("--vae-minutes", type=float, default=28.0)
    parser.add_argument("--unet-minutes", type=float, default=50.0)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--unet-batch", type=int, default=16)
    parser.add_argument("--bank", type=int, default=6144, help="training crops encoded once for the UNet")
    parser.add_argument("--vae-lr", type=float, default=5e-4)
    parser.add_argument("--unet-lr", type=float, default=5e-4)
    parser.add_argument("--kl-weight", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe", action="store_true", help="time a few steps of each phase and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    crops = Crops(photos.TRAIN, args.seed)

    text = args.work / "text"
    if not (text / "text_encoder").exists():
        torch.manual_seed(args.seed)
        write_text_encoder(text)
    cond = empty_prompt_embedding(text)

    vae = build_vae()
    if args.probe:
        _probe(vae, build_unet(cond.shape[-1]), crops, cond, args)
        return
    log.info("VAE: %.2f M parameters; photos: %s", sum(p.numel() for p in vae.parameters()) / 1e6, photos.TRAIN)
    vae_phase = Phase("vae", vae, args.work, args.vae_lr, args.vae_minutes)
    vae_phase.run(vae_loss(crops, args.vae_batch, args.kl_weight))
    vae_ema = vae_phase.ema.eval()
    scaling_path = args.work / "scaling.json"
    if not scaling_path.exists():
        scaling_path.write_text(json.dumps({"scaling_factor": 1 / latent_std(vae_ema, crops)}))
    scaling = json.loads(scaling_path.read_text())["scaling_factor"]
    log.info("latent scaling_factor %.4f", scaling)

    unet = build_unet(cond.shape[-1])
    log.info("UNet: %.2f M parameters", sum(p.numel() for p in unet.parameters()) / 1e6)
    unet_phase = Phase("unet", unet, args.work, args.unet_lr, args.unet_minutes)
    bank = latent_bank(vae_ema, crops, args.bank, args.work / "latents.pt")
    unet_phase.run(unet_loss(bank, scaling, cond, args.unet_batch, args.seed))

    from train_photo_export import export

    export(args, vae_phase, unet_phase, scaling, text)


def _probe(vae, unet, crops, cond, args) -> None:
    for name, model, fn in (("vae", vae, vae_loss(crops, args.vae_batch, args.kl_weight)),
                            ("unet", unet, unet_loss(latent_bank(vae, crops, 64, args.work / "probe.pt"), 1.0, cond,
                                                     args.unet_batch, 0))):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times = []
        for _ in range(4):
            t0 = time.time()
            loss = fn(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.time() - t0)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        log.info("%s: %.2f M params, %.3f s/step (batch %s)", name, params, np.median(times[1:]),
                 args.vae_batch if name == "vae" else args.unet_batch)


if __name__ == "__main__":
    main()
