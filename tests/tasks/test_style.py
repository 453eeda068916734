"""Style-guided generation: the Gram distance to the reference drops versus unconstrained sampling."""

import numpy as np
import pytest
import torch

from fcs import Items, SamplerConfig
from fcs.constraints import Style
from fcs.constraints.style import load_clip_vision
from fcs.images import rgb_to_tensor
from fcs.tasks import style
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
    constraint = Style(lambda x: x, clip, ref)  # decode = identity: the residual of images themselves
    assert float(constraint.residual(ref)) == pytest.approx(0.0, abs=1e-10)
    assert float(constraint.residual(torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)))) > 0


def test_style_sampling_lowers_gram_distance(sd, clip, reference):
    config = SamplerConfig(steps=4, newton_steps=3, guidance_scale=3.0)
    items = Items([reference, reference], prompts=["a cup", "a cat"], seeds=[0, 1])
    styled = style.run(sd, items, config, clip=clip, size=(64, 64))
    plain = style.run(sd, items, SamplerConfig(method="ddim", steps=4, guidance_scale=3.0), clip=clip, size=(64, 64))
    loss = Style(lambda x: x, clip, rgb_to_tensor(reference)[None].to(sd.device)).distance
    with torch.no_grad():
        for s, p in zip(styled, plain, strict=True):
            assert s.image.shape == (64, 64, 3)
            styled_d = float(loss(rgb_to_tensor(s.image)[None].to(sd.device)))
            plain_d = float(loss(rgb_to_tensor(p.image)[None].to(sd.device)))
            assert styled_d < plain_d
            assert s.residual_final < s.residual_init
