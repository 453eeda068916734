"""Real photographs that ship inside installed packages, and the photo model's train/held-out split.

The built-in ``photo`` latent diffusion model (``fcs/models/photo``) was trained on crops of
:data:`TRAIN` only; :data:`HELD_OUT` are whole photos it never saw, used by the demo, the latent
quality benchmark and the tests that need a trained latent model.
"""

from __future__ import annotations

import numpy as np

# grey photos are repeated to RGB; the first 15 are those of the first photo model (benchmarks use TRAIN[:4]
# as a validation set seen in training, so new photos go at the end)
TRAIN = (
    "astronaut", "china", "flower", "motorcycle", "hubble_deep_field", "immunohistochemistry", "retina",
    "camera", "coins", "moon", "clock", "brick", "grass", "gravel", "cell",
    "motorcycle_right", "text", "page", "microaneurysms", "lfw_faces", "mri_head",
)
# drawings, not photos: the VAE (not the UNet) also trains on them, for saturated colours and flat areas
GRAPHICS = ("colorwheel", "logo", "present", "matplotlib_logo")
HELD_OUT = ("chelsea", "coffee", "rocket", "grace_hopper")
SOURCES = {
    "china": "scikit-learn sample image", "flower": "scikit-learn sample image",
    "grace_hopper": "matplotlib sample data", "motorcycle": "scikit-image stereo_motorcycle (left view)",
    "motorcycle_right": "scikit-image stereo_motorcycle (right view)",
    "lfw_faces": "scikit-image lfw_subset: its 100 faces of 25² in a 10 × 10 mosaic",
    "mri_head": "matplotlib sample data s1045.ima.gz (MRI slice, 16 bit, scaled to 8)",
    "present": "matplotlib sample data Minduka_Present_Blue_Pack.png, on white",
    "matplotlib_logo": "matplotlib sample data logo2.png, on white", "logo": "scikit-image logo, on white",
}


def _on_white(rgba: np.ndarray) -> np.ndarray:
    rgba = np.asarray(rgba, np.float32)
    if rgba.shape[-1] < 4:
        return rgba[..., :3]
    if rgba.max() <= 1.0:
        rgba = rgba * 255
    alpha = rgba[..., 3:4] / 255
    return rgba[..., :3] * alpha + 255 * (1 - alpha)


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
    elif name in ("motorcycle", "motorcycle_right"):
        import skimage.data

        img = skimage.data.stereo_motorcycle()[0 if name == "motorcycle" else 1]
    elif name == "lfw_faces":
        import skimage.data

        faces = skimage.data.lfw_subset()[:100]  # (200, 25, 25) in [0, 1]: 100 faces, then 100 non-faces
        img = (faces.reshape(10, 10, 25, 25).transpose(0, 2, 1, 3).reshape(250, 250) * 255).round()
    elif name == "mri_head":
        import gzip

        import matplotlib.cbook

        with gzip.open(matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as f:
            mri = np.frombuffer(f.read(), np.uint16).reshape(256, 256).astype(np.float32)
        img = (mri / mri.max() * 255).round()
    elif name in ("present", "matplotlib_logo"):
        import matplotlib.cbook
        from PIL import Image

        file = "Minduka_Present_Blue_Pack.png" if name == "present" else "logo2.png"
        with Image.open(matplotlib.cbook.get_sample_data(file, asfileobj=False)) as im:
            img = _on_white(np.asarray(im.convert("RGBA"))).round()
    elif name == "logo":
        import skimage.data

        img = _on_white(skimage.data.logo()).round()
    else:
        import skimage.data

        if name not in TRAIN + GRAPHICS + HELD_OUT:
            raise ValueError(f"photo {name!r} is not one of {', '.join(TRAIN + GRAPHICS + HELD_OUT)}")
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
