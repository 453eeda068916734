"""Real photographs that ship inside installed packages, and the photo model's train/held-out split.

The built-in ``photo`` latent diffusion model (``fcs/models/photo``) was trained on crops of
:data:`TRAIN` only; :data:`HELD_OUT` are whole photos it never saw, used by the demo, the latent
quality benchmark and the tests that need a trained latent model.
"""

from __future__ import annotations

import numpy as np

# name -> (package, loader); grey photos are repeated to RGB
TRAIN = (
    "astronaut", "china", "flower", "motorcycle", "hubble_deep_field", "immunohistochemistry", "retina",
    "camera", "coins", "moon", "clock", "brick", "grass", "gravel", "cell",
)
HELD_OUT = ("chelsea", "coffee", "rocket", "grace_hopper")
SOURCES = {
    "china": "scikit-learn sample image", "flower": "scikit-learn sample image",
    "grace_hopper": "matplotlib sample data", "motorcycle": "scikit-image stereo_motorcycle (left view)",
}


def load_photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB array of a named package photo."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            img = np.asarray(im.convert("RGB"))
    elif name == "motorcycle":
        import skimage.data

        img = skimage.data.stereo_motorcycle()[0]
    else:
        import skimage.data

        if name not in TRAIN + HELD_OUT:
            raise ValueError(f"photo {name!r} is not one of {', '.join(TRAIN + HELD_OUT)}")
        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def center_square(img: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of ``img`` resized to ``size``² (Lanczos), uint8 RGB."""
    from PIL import Image

    pil = Image.fromarray(img)
    side = min(pil.size)
    left, top = (pil.width - side) // 2, (pil.height - side) // 2
    return np.asarray(pil.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS))


def held_out_crops(size: int, per_photo: int = 4, seed: int = 0) -> np.ndarray:
    """uint8 (N, size, size, 3): the centred square of each held-out photo plus ``per_photo - 1``
    random square crops of a random scale (side ≥ 40% of the short side), resized to ``size``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for name in HELD_OUT:
        img = load_photo(name)
        out.append(center_square(img, size))
        h, w = img.shape[:2]
        for _ in range(per_photo - 1):
            side = int(rng.uniform(0.4, 1.0) * min(h, w))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(img[top:top + side, left:left + side]).resize((size, size), Image.LANCZOS)
            out.append(np.asarray(crop))
    return np.stack(out)
