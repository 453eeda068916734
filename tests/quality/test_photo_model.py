"""The trained latent model (built-in ``photo``) on photos it never saw: the latent path with real weights.

Loaded by name through the normal ``from_pretrained`` path. Held to: the VAE round trip of each whole
held-out photo at 128² (issue 21: at least 25 dB, every channel's mean within ±4 of 255; chelsea and
rocket meet it, coffee and grace_hopper are held to what they measure); held-out crops reconstruct
above 23 dB on average; inexact Newton fills latent holes better than unconstrained sampling; the
decoder-free super-resolution error lowers the low-res residual through the trained VAE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcs import Items, SamplerConfig, inpaint, load_denoiser
from fcs.loading import SHIPPED, resolve_model
from fcs.metrics import psnr
from fcs.photos import HELD_OUT, center_square, held_out_crops, load_photo

N, STEPS = 8, 10
MARGIN_DB = 1.0
ROUND_TRIP_DB, ROUND_TRIP_SHIFT = 25.0, 4.0  # issue 21's acceptance: PSNR, |mean shift| per channel (of 255)
# photos the shipped weights leave short of that acceptance: (PSNR, largest |shift|) measured, held as floors
SHORT_OF_ACCEPTANCE = {"coffee": (24.03, 2.2), "grace_hopper": (20.41, 4.5)}


@pytest.fixture(scope="module")
def photo():
    if not (SHIPPED["photo"] / "unet" / "diffusion_pytorch_model.safetensors").exists():
        pytest.fail(f"the committed photo model is missing from {SHIPPED['photo']}")
    return load_denoiser("photo", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return held_out_crops(128, per_photo=2)[:N]


def test_photo_is_a_stable_diffusion_folder_loaded_by_name(photo):
    assert resolve_model("photo") == str(SHIPPED["photo"])
    assert photo.is_latent and photo.scale_factor == 4 and photo.channels == 4
    assert photo.prediction_type == "epsilon"
    assert photo.vae.config.scaling_factor != 1.0  # set from the latents' std, as SD does
    assert list(photo.scheduler.alphas_cumprod[[0, 999]].numpy().round(5)) == [0.99915, 0.00466]  # SD 1.5's schedule


@pytest.fixture(scope="module")
def round_trip(photo) -> dict[str, tuple[float, np.ndarray]]:
    """``den.decode(den.encode(x))`` of each held-out photo's 128² centre square: PSNR and mean shift per
    channel (of 255), printed as a table."""
    out, rows = {}, []
    for name in HELD_OUT:
        x8 = center_square(load_photo(name), 128)
        x = torch.from_numpy(x8.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            recon = photo.decode(photo.encode(x)).clamp(0, 1)
        o8 = (recon[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        out[name] = (psnr(x8, o8), o8.astype(np.float64).mean((0, 1)) - x8.astype(np.float64).mean((0, 1)))
        rows.append(f"| {name} | {out[name][0]:.2f} dB | {', '.join(f'{v:+.1f}' for v in out[name][1])} |")
    print("\n".join(["", "| photo | VAE PSNR | mean shift (R, G, B, of 255) |", "|---|---|---|", *rows]))
    return out


def test_vae_round_trip_of_each_held_out_photo(round_trip):
    """Issue 21: the first photo model shifted rocket's green by +13.7 (a teal sky) and reconstructed
    grace_hopper at 20.6 dB. Photos that meet the acceptance are held to it; the others to what the
    shipped weights measure (0.3 dB and 1 level of slack), so a worse model fails here."""
    for name, (score, shift) in round_trip.items():
        floor_db, max_shift = SHORT_OF_ACCEPTANCE.get(name, (ROUND_TRIP_DB + 0.3, ROUND_TRIP_SHIFT - 1.0))
        assert score >= floor_db - 0.3, (name, score)
        assert np.abs(shift).max() <= max_shift + 1.0, (name, shift)
    met = [n for n in HELD_OUT if n not in SHORT_OF_ACCEPTANCE]
    assert all(round_trip[n][0] >= ROUND_TRIP_DB and np.abs(round_trip[n][1]).max() <= ROUND_TRIP_SHIFT for n in met)


@pytest.mark.xfail(strict=True, reason="issue 21 stays open: coffee 24.0 dB and grace_hopper 20.4 dB (G +4.5) "
                   "are short of 25 dB / ±4 with 4 latent channels at ×4 and about an hour of CPU training")
def test_issue_21_acceptance_on_every_held_out_photo(round_trip):
    assert all(score >= ROUND_TRIP_DB and np.abs(shift).max() <= ROUND_TRIP_SHIFT
               for score, shift in round_trip.values()), round_trip


def test_vae_reconstructs_held_out_crops_above_23_db(photo, crops):
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        recon = photo.decode(photo.encode(x)).clamp(0, 1)
    out = (recon.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    scores = [psnr(t, o) for t, o in zip(crops, out, strict=True)]
    assert np.mean(scores) >= 23.0, scores


def _hole_psnr(photo, crops, method: str, masks) -> float:
    config = SamplerConfig(method=method, steps=STEPS, newton_steps=3, composite=False)
    res = inpaint(photo, Items(list(crops), masks), config)
    return float(np.mean([psnr(t, r.image, m > 0.5) for t, r, m in zip(crops, res, masks, strict=True)]))


def test_newton_fills_latent_holes_better_than_unconstrained(photo, crops):
    """Measured (8 crops, box, no compositing): newton S=10 K=3 16.49 dB, unconstrained 12.34 dB,
    replacement 13.68 dB with the issue-21 weights (the first photo model: 14.85, 11.24, 15.36 dB, Newton
    below replacement). This test holds that the constraint reaches the hole through the trained prior;
    one run of 8 crops is no claim about Newton against replacement (issue 10)."""
    from jobs.demo import make_mask

    masks = [(make_mask("box", 128) > 127).astype(np.float32)] * len(crops)
    scores = {m: _hole_psnr(photo, crops, m, masks) for m in ("newton", "ddim")}
    assert scores["newton"] >= scores["ddim"] + 2 * MARGIN_DB, scores


def test_decoder_free_superres_lowers_the_low_res_residual(photo, crops):
    from fcs.tasks import superres

    low = [np.asarray(torch.nn.functional.avg_pool2d(torch.from_numpy(c).permute(2, 0, 1)[None].float(), 2)[0]
                      .permute(1, 2, 0).round().numpy().astype(np.uint8)) for c in crops[:4]]
    config = SamplerConfig(steps=STEPS, newton_steps=3, lr=0.1)
    res = superres.run(photo, Items(low), config, scale=2, variant="encoder")
    before = np.array([r.residual_init for r in res])
    after = np.array([r.residual_final for r in res])
    assert (after < 0.7 * before).all(), (before, after)
