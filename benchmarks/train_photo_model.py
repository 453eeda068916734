"""Train the built-in ``photo`` latent diffusion model (Stable Diffusion layout) on package photos.

    python benchmarks/train_photo_model.py --vae-minutes 60 --unet-minutes 50

Three phases, each resumable from the checkpoints in ``--work`` (rerun the same command after a
stop and it goes on where it was):

1. ``vae``: an ``AutoencoderKL`` (×4 downsampling, 4 latent channels) on random square crops of the
   training photos and drawings at several scales (side from the crop size up to the whole short
   side), with flips and colour augmentation (:class:`Colour`: hue rotation, channel permutation,
   saturation, white balance, brightness/contrast/gamma jitter, grey photos tinted); loss MSE + L1 +
   a small KL term, as an SD-style KL autoencoder without the GAN. Every few minutes the EMA
   weights' round trip of the whole held-out photos (128² centre squares) is logged.
2. ``unet``: ``scaling_factor`` = 1 / std of the latents (as SD does), then a
   ``UNet2DConditionModel`` (ε-prediction, cross-attention on the empty prompt's embedding of a
   fixed random tiny CLIP text encoder) on the VAE's latents of 128² crops, SD 1.5's noise schedule.
3. ``export``: the EMA weights as a ``StableDiffusionPipeline`` folder (safetensors), a model card,
   loss curves, the VAE's PSNR on held-out crops and a grid of unconstrained samples next to real
   held-out crops.

Photos: ``fcs.photos.TRAIN`` (+ ``fcs.photos.GRAPHICS`` for the VAE) for training, whole
``fcs.photos.HELD_OUT`` photos never seen.
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
GRAPHICS_WEIGHT = 0.5  # drawings (VAE only), relative to a grey photo
VAE_BLOCKS = (32, 64, 128)
# 8 GroupNorm groups, not 16: the last norm before conv_out (32 channels) had 2 channels per group, and a
# group of 2 normalised over the image keeps only a sign where a region is flat, so the colour of a sky
# that fills most of the image came out as one of a few "palette" colours (the first model's teal sky;
# flat grey 200 decoded as (203, 183, 204)); with 4 channels per group 2 degrees of freedom remain
NORM_GROUPS = 8


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=VAE_BLOCKS, layers_per_block=1, norm_num_groups=NORM_GROUPS, sample_size=UNET_CROP,
    )


def build_unet(cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=UNET_CROP // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=NORM_GROUPS,
    )


# RGB -> YIQ; hue rotation and saturation act on (I, Q)
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = torch.linalg.inv(_YIQ)


class Colour:
    """Colour and tone augmentation of one crop (3, s, s) in [0, 1], so that the models learn colour
    and tone rather than the palette of a few photos. Each part is drawn independently:

    - grey photos: tinted (a random duotone: dark colour → light colour) with probability 0.7;
    - channel permutation (p 0.25);
    - hue rotation by a uniform angle in YIQ (p 0.5), saturation ×[0.35, 1.8] log-uniform (p 0.7);
    - white balance: per-channel gains ×[0.8, 1.25] log-uniform (p 0.5);
    - a coloured shade (``shade``, default p 0.25): per-channel gains uniform in [0.25, 1], for dark
      saturated colours, which photos hardly have (the first models turned a dark-blue sky teal);
    - contrast ×[0.65, 1.5] log-uniform about the mean, brightness ±0.15, gamma [0.67, 1.5] (each p 0.5).
    """

    def __init__(self, gen: torch.Generator, shade: float = 0.0) -> None:
        self.gen, self.shade = gen, shade

    def _u(self, lo: float = 0.0, hi: float = 1.0, shape: tuple = ()) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=self.gen)

    def _p(self, p: float) -> bool:
        return float(self._u()) < p

    def _log(self, lo: float, hi: float, shape: tuple = ()) -> torch.Tensor:
        return torch.exp(self._u(math.log(lo), math.log(hi), shape))

    def __call__(self, x: torch.Tensor, grey: bool) -> torch.Tensor:
        if grey and self._p(0.7):
            dark, light = self._u(0.0, 0.35, (3, 1, 1)), self._u(0.6, 1.0, (3, 1, 1))
            x = dark + (light - dark) * x.mean(0, keepdim=True)
        if self._p(0.25):
            x = x[torch.randperm(3, generator=self.gen)]
        m = torch.eye(3)
        if self._p(0.5):
            a = float(self._u(-math.pi, math.pi))
            rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
            m = rot @ m
        if self._p(0.7):
            m = torch.diag(torch.cat([torch.ones(1), self._log(0.35, 1.8).expand(2)])) @ m
        m = _RGB @ m @ _YIQ
        if self._p(0.5):
            m = torch.diag(self._log(0.8, 1.25, (3,))) @ m
        x = torch.einsum("ij,jhw->ihw", m, x)
        if self.shade and self._p(self.shade):
            x = x.clamp(0, 1) * self._u(0.25, 1.0, (3, 1, 1))
        if self._p(0.5):
            mean = x.mean()
            x = (x - mean) * self._log(0.65, 1.5) + mean
        if self._p(0.5):
            x = x + self._u(-0.15, 0.15)
        x = x.clamp(0, 1)
        if self._p(0.5):
            x = x.pow(self._log(0.67, 1.5))
        return x


class Crops:
    """Random square crops of the training photos at several scales, as (B, 3, s, s) in [-1, 1];
    a fraction ``augment`` of them with :class:`Colour` augmentation, and a fraction ``fields`` replaced
    by smooth colour fields (:meth:`field`: every colour of the RGB cube, as skies and walls)."""

    def __init__(self, names: tuple[str, ...], seed: int, augment: float = 0.0, graphics: tuple[str, ...] = (),
                 fields: float = 0.0, shade: float = 0.0) -> None:
        self.names = names + graphics
        self.photos = [torch.from_numpy(photos.load_photo(n).copy()).permute(2, 0, 1).float() / 255 for n in self.names]
        self.grey = [bool((p[0] - p[1]).abs().mean() <= 1e-3 and (p[1] - p[2]).abs().mean() <= 1e-3)
                     for p in self.photos]
        weights = torch.tensor([GRAPHICS_WEIGHT if n in graphics else 1.0 if g else COLOUR_WEIGHT
                                for n, g in zip(self.names, self.grey, strict=True)])
        self.weights = weights / weights.sum()
        self.augment, self.fields = augment, fields
        self.gen = torch.Generator().manual_seed(seed)
        self.colour = Colour(self.gen, shade)

    def field(self, size: int) -> torch.Tensor:
        """(1, 3, s, s) in [0, 1]: a linear gradient between two colours drawn uniformly from the RGB cube
        (the second near the first half the time), in a random direction, plus faint smooth noise."""
        c0 = torch.rand(3, 1, 1, generator=self.gen)
        c1 = torch.rand(3, 1, 1, generator=self.gen)
        if float(torch.rand((), generator=self.gen)) < 0.5:
            c1 = (c0 + 0.15 * (c1 - 0.5)).clamp(0, 1)
        a = float(torch.rand((), generator=self.gen)) * 2 * math.pi
        t = torch.linspace(-0.5, 0.5, size)
        ramp = (math.cos(a) * t[None, :] + math.sin(a) * t[:, None]) + 0.5
        noise = F.interpolate(torch.randn(1, 3, 4, 4, generator=self.gen), size=(size, size), mode="bicubic",
                              align_corners=False)
        return (c0 + (c1 - c0) * ramp + 0.02 * noise[0]).clamp(0, 1)[None]

    def sample(self, batch: int, size: int) -> torch.Tensor:
        idx = torch.multinomial(self.weights, batch, replacement=True, generator=self.gen)
        out = []
        for i in idx.tolist():
            if self.fields and float(torch.rand((), generator=self.gen)) < self.fields:
                out.append(self.field(size) * 2 - 1)
                continue
            img = self.photos[i]
            h, w = img.shape[1:]
            short = min(h, w)
            u = float(torch.rand((), generator=self.gen))
            side = short if short <= size else int(round(size * math.exp(u * math.log(short / size))))
            top = int(torch.randint(0, h - side + 1, (), generator=self.gen))
            left = int(torch.randint(0, w - side + 1, (), generator=self.gen))
            crop = img[None, :, top:top + side, left:left + side]
            if side != size:
                crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=side > size,
                                     align_corners=False)
            if float(torch.rand((), generator=self.gen)) < 0.5:
                crop = crop.flip(-1)
            crop = crop.clamp(0, 1)
            if self.augment and float(torch.rand((), generator=self.gen)) < self.augment:
                crop = self.colour(crop[0], self.grey[i])[None]
            out.append(crop * 2 - 1)
        return torch.cat(out).clamp(-1, 1)


def held_out_table(vae) -> dict[str, dict]:
    """VAE round trip (posterior mean) of each whole held-out photo as its 128² centre square, as
    ``den.decode(den.encode(x))`` does: PSNR (dB, 8-bit) and mean shift per channel (of 255)."""
    out = {}
    with torch.no_grad():
        for name in photos.HELD_OUT:
            x8 = photos.center_square(photos.load_photo(name), UNET_CROP)
            x = torch.from_numpy(x8.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
            recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            r8 = ((recon[0].permute(1, 2, 0).numpy() + 1) * 127.5 + 0.5).astype(np.uint8).astype(np.float64)
            mse = float(((r8 - x8) ** 2).mean())
            out[name] = {"psnr_db": round(10 * math.log10(255**2 / mse), 2),
                         "shift": [round(float(v), 1) for v in r8.mean((0, 1)) - x8.mean((0, 1))]}
    return out


class Phase:
    """A training loop with EMA, a time budget, cosine lr and a checkpoint it resumes from."""

    def __init__(self, name: str, model: torch.nn.Module, work: Path, lr: float, minutes: float,
                 threads: int = 2) -> None:
        self.name, self.model, self.minutes, self.base_lr = name, model, minutes, lr
        # on a machine shared with other work, 1 thread can beat 2 by far (a thread that shares a core
        # with a busy process stalls every op): each count is timed in turn and the faster one used
        self.thread_options, self.step_time = tuple(range(1, threads + 1)), {}
        self.ema = type(model).from_config(model.config)
        self.ema.load_state_dict(model.state_dict())
        self.ema.requires_grad_(False)
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        self.path = work / f"{name}.pt"
        self.step, self.elapsed, self.losses, self.evals, self.meta = 0, 0.0, [], [], {}
        if self.path.exists():
            state = torch.load(self.path, weights_only=False)
            model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            self.step, self.elapsed, self.losses = state["step"], state["elapsed"], state["losses"]
            self.evals, self.meta = state.get("evals", []), state.get("meta", {})
            log.info("%s: resumed at step %d (%.1f min done)", name, self.step, self.elapsed / 60)

    @property
    def done(self) -> bool:
        return self.elapsed >= self.minutes * 60

    def save(self, extra: dict | None = None) -> None:
        state = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                 "step": self.step, "elapsed": self.elapsed, "losses": self.losses, "evals": self.evals,
                 "meta": self.meta, **(extra or {})}
        torch.save(state, self.path.with_suffix(".tmp"))
        self.path.with_suffix(".tmp").replace(self.path)

    def run(self, loss_fn, save_every_s: float = 120.0, evaluate=None, eval_every_s: float = 300.0) -> None:
        """``evaluate(ema)`` -> dict, logged and kept in the checkpoint every ``eval_every_s`` of training."""
        last_save = time.time()
        next_eval = (int(self.elapsed // eval_every_s) + 1) * eval_every_s
        while not self.done:
            threads = self._threads()
            torch.set_num_threads(threads)
            t0 = time.time()
            frac = self.elapsed / (self.minutes * 60)
            lr = self.base_lr * min(1.0, (self.step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for group in self.opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(self.model)
            if not torch.isfinite(loss):
                log.warning("%s step %d: loss %s, step skipped", self.name, self.step, float(loss))
                continue
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            with torch.no_grad():
                decay = min(0.999, (1 + self.step) / (10 + self.step))
                for pe, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    pe.lerp_(p, 1 - decay)
            self.losses.append(float(loss.detach()))
            self.step += 1
            dt = time.time() - t0
            self.elapsed += dt
            self.step_time[threads] = 0.7 * self.step_time.get(threads, dt) + 0.3 * dt
            if self.step % 100 == 0:
                log.info("%s step %d loss %.4f lr %.2e (%.1f / %.0f min; s/step by threads %s)", self.name, self.step,
                         np.mean(self.losses[-100:]), lr, self.elapsed / 60, self.minutes,
                         {n: round(t, 2) for n, t in self.step_time.items()})
            if evaluate is not None and self.elapsed >= next_eval:
                self._evaluate(evaluate)
                next_eval += eval_every_s
            if time.time() - last_save > save_every_s:
                self.save()
                last_save = time.time()
        if evaluate is not None and (not self.evals or self.evals[-1]["step"] != self.step):
            self._evaluate(evaluate)
        self.save()

    def _threads(self) -> int:
        """The fastest thread count so far; every 200 steps, 2 steps with another one (loads change)."""
        untimed = [n for n in self.thread_options if n not in self.step_time]
        if untimed:
            return untimed[0]
        ranked = sorted(self.thread_options, key=self.step_time.__getitem__)
        if self.step % 200 < 2 and len(ranked) > 1:
            return ranked[1 + (self.step // 200) % (len(ranked) - 1)]
        return ranked[0]

    def _evaluate(self, evaluate) -> None:
        self.ema.eval()
        result = evaluate(self.ema)
        self.evals.append({"step": self.step, "minutes": round(self.elapsed / 60, 2), **result})
        log.info("%s eval at step %d: %s", self.name, self.step, json.dumps(result))


def vae_loss(crops: Crops, batch: int, kl_weight: float, colour_weight: float = 0.0):
    """MSE + L1/2 + KL, plus ``colour_weight`` × the MSE of 8×8 means: a colour or tone cast over an
    area (the first model's teal sky) costs (1 + colour_weight)× what the same error as detail costs."""

    def loss(vae) -> torch.Tensor:
        x = crops.sample(batch, VAE_CROP)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        out = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + kl_weight * posterior.kl().mean()
        if colour_weight:
            out = out + colour_weight * F.mse_loss(F.avg_pool2d(recon, 8), F.avg_pool2d(x, 8))
        return out

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
    parser.add_argument("--vae-minutes", type=float, default=60.0)
    parser.add_argument("--unet-minutes", type=float, default=50.0)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--unet-batch", type=int, default=16)
    parser.add_argument("--bank", type=int, default=8192, help="training crops encoded once for the UNet")
    parser.add_argument("--vae-augment", type=float, default=0.8, help="fraction of VAE crops colour-augmented")
    parser.add_argument("--unet-augment", type=float, default=0.5, help="fraction of UNet crops colour-augmented")
    parser.add_argument("--vae-fields", type=float, default=0.1, help="fraction of VAE crops that are colour fields")
    parser.add_argument("--vae-shade", type=float, default=0.25, help="p of a coloured shade in VAE augmentation")
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--unet-lr", type=float, default=5e-4)
    parser.add_argument("--kl-weight", type=float, default=1e-6)
    parser.add_argument("--colour-weight", type=float, default=4.0, help="weight of the VAE's 8×8-mean MSE term")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe", action="store_true", help="time a few steps of each phase and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    crops = Crops(photos.TRAIN, args.seed, augment=args.vae_augment, graphics=photos.GRAPHICS,
                  fields=args.vae_fields, shade=args.vae_shade)

    text = args.work / "text"
    if not (text / "text_encoder").exists():
        torch.manual_seed(args.seed)
        write_text_encoder(text)
    cond = empty_prompt_embedding(text)

    vae = build_vae()
    if args.probe:
        _probe(vae, build_unet(cond.shape[-1]), crops, cond, args)
        return
    log.info("VAE: %.2f M parameters; photos: %s; drawings: %s", sum(p.numel() for p in vae.parameters()) / 1e6,
             photos.TRAIN, photos.GRAPHICS)
    vae_phase = Phase("vae", vae, args.work, args.vae_lr, args.vae_minutes, args.threads)
    if args.colour_weight:
        # the step the term began at (the shipped model's run added it when resumed part-way)
        vae_phase.meta.setdefault("colour_loss_from_step", vae_phase.step)
    if args.vae_fields or args.vae_shade:
        # likewise: fields and shades were added at a resume of the shipped model's run
        vae_phase.meta.setdefault("fields_and_shade_from_step", vae_phase.step)
    vae_phase.run(vae_loss(crops, args.vae_batch, args.kl_weight, args.colour_weight), evaluate=held_out_table)
    vae_ema = vae_phase.ema.eval()
    # the UNet learns photos only (no drawings), fewer of them colour-augmented
    crops = Crops(photos.TRAIN, args.seed + 2, augment=args.unet_augment)
    scaling_path = args.work / "scaling.json"
    if not scaling_path.exists():
        scaling_path.write_text(json.dumps({"scaling_factor": 1 / latent_std(vae_ema, crops)}))
    scaling = json.loads(scaling_path.read_text())["scaling_factor"]
    log.info("latent scaling_factor %.4f", scaling)

    unet = build_unet(cond.shape[-1])
    log.info("UNet: %.2f M parameters", sum(p.numel() for p in unet.parameters()) / 1e6)
    unet_phase = Phase("unet", unet, args.work, args.unet_lr, args.unet_minutes, args.threads)
    bank = latent_bank(vae_ema, crops, args.bank, args.work / "latents.pt")
    unet_phase.run(unet_loss(bank, scaling, cond, args.unet_batch, args.seed))

    from train_photo_export import export

    export(args, vae_phase, unet_phase, scaling, text)


def _probe(vae, unet, crops, cond, args) -> None:
    for name, model, fn in (("vae", vae, vae_loss(crops, args.vae_batch, args.kl_weight, args.colour_weight)),
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
