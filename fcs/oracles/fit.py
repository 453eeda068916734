"""Fit the image oracles to photos and write ``fitted.json``: ``python -m fcs.oracles.fit``.

Data: the 15 package photos the built-in ``photo`` model was first trained on, each resized to a
short side of 128 pixels. ``oracle-gauss``: the stationary prior fitted to 64² crops in [-1, 1] on
a grid of positions. ``oracle-latent``: a linear VAE (×4, 4 channels) from the 4 × 4 blocks of those
crops, and the stationary prior fitted to the latents of 128² centre crops (its cutoff f0 in latent
cycles is 4× the pixel one: the same frequency in the image).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fcs.oracles.gaussian import CUTOFF, fit_stationary
from fcs.oracles.linear_vae import fit_linear_vae

FITTED = Path(__file__).with_name("fitted.json")
PHOTOS = ("astronaut", "china", "flower", "motorcycle", "hubble_deep_field", "immunohistochemistry", "retina",
          "camera", "coins", "moon", "clock", "brick", "grass", "gravel", "cell")
SHORT_SIDE, CROP, FACTOR, LATENT_CHANNELS = 128, 64, 4, 4


def _photos() -> list[np.ndarray]:
    """(3, H, W) float64 in [-1, 1], short side 128."""
    from PIL import Image

    from fcs.photos import load_photo

    out = []
    for name in PHOTOS:
        img = Image.fromarray(load_photo(name))
        scale = SHORT_SIDE / min(img.size)
        img = img.resize((max(SHORT_SIDE, round(img.width * scale)), max(SHORT_SIDE, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
        out.append(np.asarray(img, np.float64).transpose(2, 0, 1) / 127.5 - 1)
    return out


def _crops(images: list[np.ndarray], size: int, stride: int) -> list[np.ndarray]:
    return [img[:, y:y + size, x:x + size] for img in images
            for y in range(0, img.shape[1] - size + 1, stride) for x in range(0, img.shape[2] - size + 1, stride)]


def _centre(img: np.ndarray, size: int) -> np.ndarray:
    y, x = (img.shape[1] - size) // 2, (img.shape[2] - size) // 2
    return img[:, y:y + size, x:x + size]


def fit_oracles() -> dict:
    """The fitted parameters of ``oracle-gauss`` and ``oracle-latent`` as plain JSON values."""
    import torch

    images = _photos()
    crops = _crops(images, CROP, CROP // 2)
    pixel_prior = fit_stationary(crops)
    vae = fit_linear_vae(crops, FACTOR, LATENT_CHANNELS)
    squares = [torch.from_numpy(_centre(img, SHORT_SIDE))[None] for img in images]
    latents = [vae.encode(sq)[0].numpy() for sq in squares]
    return {"photos": list(PHOTOS), "gauss": pixel_prior.to_dict(),
            "latent": {"vae": vae.to_dict(), "prior": fit_stationary(latents, CUTOFF * FACTOR).to_dict()}}


def load_fitted() -> dict:
    return json.loads(FITTED.read_text())


if __name__ == "__main__":
    FITTED.write_text(json.dumps(fit_oracles(), indent=1) + "\n")
    print(f"wrote {FITTED}")
