"""Layer extraction on synthetic composites of two real photos with a known alpha (disk and box)."""

import numpy as np
import pytest

from fcs import SamplerConfig
from fcs.tasks.layers import extract_layers, recompose

SIZE = 64


def _photos():
    import skimage.data
    from PIL import Image

    bg = np.asarray(Image.fromarray(skimage.data.coffee()).resize((SIZE, SIZE)))
    fg = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((SIZE, SIZE)))
    return bg, fg


def _composite(alpha: np.ndarray) -> np.ndarray:
    bg, fg = _photos()
    a = alpha[..., None]
    return np.round(a * fg + (1 - a) * bg).astype(np.uint8)


def _disk() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return ((yy - 22) ** 2 + (xx - 22) ** 2 < 10**2).astype(np.float64)


def _box() -> np.ndarray:
    a = np.zeros((SIZE, SIZE))
    a[38:56, 36:58] = 1
    return a


def _rough(alpha: np.ndarray, pad: int = 4) -> np.ndarray:
    """A rough box region around the true object (what a user would draw)."""
    ys, xs = np.nonzero(alpha)
    r = np.zeros_like(alpha)
    r[max(0, ys.min() - pad): ys.max() + pad + 1, max(0, xs.min() - pad): xs.max() + pad + 1] = 1
    return r


CONFIG = SamplerConfig(steps=4, newton_steps=1)


@pytest.mark.parametrize("shape", ["disk", "box"])
def test_layers_reconstruct_the_input(sd, shape):
    alpha = _disk() if shape == "disk" else _box()
    x = _composite(alpha)
    layers = extract_layers(sd, x, [_rough(alpha)], CONFIG, rounds=2, samples=3)
    assert layers.alpha.shape == (SIZE, SIZE) and layers.foreground.shape == (SIZE, SIZE, 4)
    assert layers.background.shape == (SIZE, SIZE, 3)
    assert 0.0 <= layers.alpha.min() and layers.alpha.max() <= 1.0
    error = np.abs(recompose(layers) - x / 255.0)
    assert error.max() < 0.03, f"max reconstruction error {error.max():.4f}"
    assert layers.nfe > 0 and layers.rounds >= 2
    outside = _rough(alpha, pad=4 + 2) == 0  # the region, dilated by extract_layers' margin (2 px)
    assert (layers.alpha[outside] == 0).all()


def test_layers_several_objects(sd):
    alpha = np.maximum(_disk(), _box())
    x = _composite(alpha)
    layers = extract_layers(sd, x, [_rough(_disk()), _rough(_box())], CONFIG, rounds=2, samples=2)
    assert len(layers.alphas) == 2
    assert np.abs(recompose(layers) - x / 255.0).max() < 0.03
    # each object's alpha stays near its own region
    assert layers.alphas[0][_rough(_box()) * (1 - _rough(_disk(), pad=4 + 2)) > 0].max() == 0


def test_layers_reject_bad_regions(sd):
    x = _composite(_disk())
    with pytest.raises(ValueError, match="at least one"):
        extract_layers(sd, x, [], CONFIG)
    with pytest.raises(ValueError, match="empty"):
        extract_layers(sd, x, [np.zeros((SIZE, SIZE))], CONFIG)
    with pytest.raises(ValueError, match="must match"):
        extract_layers(sd, x, [np.ones((8, 8))], CONFIG)


def test_completions_branch_at_the_same_noise_level_on_every_grid(sd):
    """Step S/2 on the model's grid; on the log-SNR grid (which spends its steps late) the step nearest
    that noise level, not its own middle step."""
    from fcs.samplers.loop import schedule_for
    from fcs.tasks.layers import branch_step

    shape = sd.latent_shape(SIZE, SIZE)
    model = SamplerConfig(steps=12)
    assert branch_step(sd, model, schedule_for(sd, 12, shape), shape, 0.5) == 6
    logsnr = SamplerConfig(steps=12, spacing="logsnr")
    at = branch_step(sd, logsnr, schedule_for(sd, 12, shape, "logsnr"), shape, 0.5)
    target = schedule_for(sd, 12, shape).log_snr(6)
    levels = [schedule_for(sd, 12, shape, "logsnr").log_snr(i) for i in range(1, 12)]
    assert at < 6 and abs(levels[at - 1] - target) == min(abs(v - target) for v in levels)
