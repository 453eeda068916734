"""Style-guided generation: the Gram distance to the reference drops versus unconstrained sampling."""

import numpy as np
import pytest
import torch

from fcs import SamplerConfig
from fcs.constraints.style import StyleLoss, load_clip_vision
from fcs.images import rgb_to_tensor
from fcs.style import stylize
from fcs.tiny import build_tiny_clip_vision


@pytest.fixture(scope="module")
def clip(tmp_path_factory, device):
    return load_clip_vision(str(build_tiny_clip_vision(tmp_path_factory.mktemp("clip"))), device=device)


@pytest.fixture(scope="module")
def reference():
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.coffee()).resize((48, 48)))


def test_style_loss_is_zero_at_the_reference(clip, reference):
    ref = rgb_to_tensor(reference)[None]
    loss = StyleLoss(clip, ref)
    assert float(loss(ref)) == pytest.approx(0.0, abs=1e-10)
    assert float(loss(torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)))) > 0


def test_style_sampling_lowers_gram_distance(sd, clip, reference):
    config = SamplerConfig(steps=4, newton_steps=3, guidance_scale=3.0)
    styled = stylize(sd, clip, [reference, reference], ["a cup", "a cat"], size=(64, 64), seeds=[0, 1], config=config)
    plain = stylize(sd, clip, [reference, reference], ["a cup", "a cat"], size=(64, 64), seeds=[0, 1],
                    config=SamplerConfig(method="ddim", steps=4, guidance_scale=3.0))
    loss = StyleLoss(clip, rgb_to_tensor(reference)[None].to(sd.device))
    with torch.no_grad():
        for s, p in zip(styled, plain, strict=True):
            assert s.image.shape == (64, 64, 3)
            styled_d = float(loss(rgb_to_tensor(s.image)[None].to(sd.device)))
            plain_d = float(loss(rgb_to_tensor(p.image)[None].to(sd.device)))
            assert styled_d < plain_d
            assert s.residual_final < s.residual_init
