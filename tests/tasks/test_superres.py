"""Super-resolution ×s: residual goes down, sizes scale, and the two variants' backward budgets."""

import numpy as np
import pytest
import torch

from fcs import Items, SamplerConfig
from fcs.constraints import downsample
from fcs.images import rgb_to_tensor
from fcs.tasks import superres


def _low_res(seed: int = 0, h: int = 12, w: int = 10) -> np.ndarray:
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.chelsea()).resize((w, h), Image.BICUBIC)
    return np.asarray(photo)


def _lr_residual(out: np.ndarray, low: np.ndarray, scale: int) -> float:
    """‖A(out) − y‖ (RMS) measured on the returned uint8 image, independent of the sampler's trace."""
    return float((downsample(rgb_to_tensor(out)[None], scale) - rgb_to_tensor(low)[None]).pow(2).mean().sqrt())


@pytest.mark.parametrize("scale", [2, 4])
def test_superres_lowers_low_res_residual_and_scales_size(sd, scale):
    low = _low_res()
    config = SamplerConfig(steps=4, newton_steps=3, lr=0.5)
    newton = superres.run(sd, Items([low]), config, scale=scale)[0]
    plain = superres.run(sd, Items([low]), SamplerConfig(method="ddim", steps=4), scale=scale)[0]
    assert newton.image.shape == (low.shape[0] * scale, low.shape[1] * scale, 3)
    assert newton.residual_final < newton.residual_init
    assert _lr_residual(newton.image, low, scale) < _lr_residual(plain.image, low, scale)


def test_superres_rejects_bad_scale_and_variant(sd):
    with pytest.raises(ValueError, match="scale"):
        superres.run(sd, Items([_low_res()]), scale=3)
    with pytest.raises(ValueError, match="variant"):
        superres.run(sd, Items([_low_res()]), scale=2, variant="magic")


def _count_backward(module: torch.nn.Module) -> dict:
    """Counts backward passes through ``module`` via a grad hook on each forward output."""
    seen = {"forward": 0, "backward": 0}

    def on_forward(mod, args, output):
        seen["forward"] += 1
        out = output.sample if hasattr(output, "sample") else output
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda grad: seen.__setitem__("backward", seen["backward"] + 1))

    handle = module.register_forward_hook(on_forward)
    return seen, handle


@pytest.mark.parametrize("variant, decoder_backward", [("decoder", "S*K"), ("encoder", 0)])
def test_superres_backward_budget(sd, count_unet, variant, decoder_backward):
    steps, k = 3, 2
    decoder_seen, handle = _count_backward(sd.vae.decoder)
    try:
        with count_unet(sd) as unet_seen:
            res = superres.run(sd, Items([_low_res()]), SamplerConfig(steps=steps, newton_steps=k, lr=0.1), scale=2,
                               variant=variant)[0]
    finally:
        handle.remove()
    assert res.nfe == steps * (1 + 2 * k) == unet_seen.calls
    assert unet_seen.backward == 0
    expected = steps * k if decoder_backward == "S*K" else 0
    assert decoder_seen["backward"] == expected
    assert decoder_seen["forward"] > 0
