"""FastConstrainedInpaintPipeline as a drop-in for a diffusers inpainting script (issue 24, item 7,
acceptance 6): the docs-shaped script runs unchanged but for the class; generators, output types,
num_images_per_prompt, height/width, return_dict and diffusers' input forms behave as in diffusers;
the diffusers arguments this sampler cannot honour fail with their name and the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcs import FastConstrainedInpaintPipeline
from fcs.diffusers_args import UNSUPPORTED, batch_inputs, check_call
from fcs.photos import center_square, load_photo

# diffusers' inpainting example (AutoPipelineForInpainting, load_image, a seeded generator), with our class
SCRIPT = """
import torch
from diffusers.utils import load_image

from fcs import FastConstrainedInpaintPipeline

pipe = FastConstrainedInpaintPipeline.from_pretrained("photo")
pipe = pipe.to("cpu")

init_image = load_image("init.png")
mask_image = load_image("mask.png")

generator = torch.Generator("cpu").manual_seed(0)
prompt = "a cat sitting on a sofa"
image = pipe(
    prompt=prompt, image=init_image, mask_image=mask_image, generator=generator,
    num_inference_steps=4, strength=1.0, guidance_scale=7.5, output_type="pil",
).images[0]
image.save("inpainted.png")
"""

SIDE = 64  # the photo model is made for 128², but 64² keeps each call well under a second on a CPU
STEPS = 4


def _photo(side: int = SIDE) -> Image.Image:
    return Image.fromarray(center_square(load_photo("chelsea"), side))


def _hole(side: int = SIDE) -> Image.Image:
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 255
    return Image.fromarray(mask)


@pytest.fixture(scope="module")
def pipe(photo_model):
    return FastConstrainedInpaintPipeline(photo_model)


def _call(pipe, **kwargs):
    return pipe(prompt="a cat", image=_photo(), mask_image=_hole(), num_inference_steps=STEPS, **kwargs)


def test_the_diffusers_docs_script_runs_unchanged(tmp_path, monkeypatch):
    _photo(128).save(tmp_path / "init.png")
    _hole(128).save(tmp_path / "mask.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(SCRIPT, "diffusers_inpaint_script.py", "exec"), {"__name__": "__main__"})
    result = np.asarray(Image.open(tmp_path / "inpainted.png"))
    init, hole = np.asarray(_photo(128)), np.asarray(_hole(128)) > 0
    assert result.shape == (128, 128, 3)
    np.testing.assert_array_equal(result[~hole], init[~hole])  # kept pixels are the input's
    assert np.abs(result[hole].astype(int) - init[hole]).mean() > 1  # the hole was regenerated


def test_same_generator_seed_same_image_other_seed_other_image(pipe):
    def run(seed):
        return np.asarray(_call(pipe, generator=torch.Generator("cpu").manual_seed(seed)).images[0])

    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def test_a_list_of_generators_gives_one_seed_per_image(pipe):
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    both = _call(pipe, generator=gens, num_images_per_prompt=2).images
    alone = _call(pipe, generator=torch.Generator().manual_seed(1)).images[0]
    np.testing.assert_allclose(np.asarray(both[1]), np.asarray(alone), atol=1)  # item 1 = its own generator
    with pytest.raises(ValueError, match="list of 2 for 3 images"):
        _call(pipe, generator=gens, num_images_per_prompt=3)


def test_output_types_np_and_pt_agree_with_pil(pipe):
    pil = _call(pipe, seed=3, num_images_per_prompt=2).images
    arr = _call(pipe, seed=3, num_images_per_prompt=2, output_type="np").images
    ten = _call(pipe, seed=3, num_images_per_prompt=2, output_type="pt").images
    assert len(pil) == 2 and all(im.size == (SIDE, SIDE) for im in pil)
    assert (np.asarray(pil[0]) != np.asarray(pil[1])).any()  # successive seeds
    assert arr.shape == (2, SIDE, SIDE, 3) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    assert ten.shape == (2, 3, SIDE, SIDE) and ten.dtype == torch.float32
    np.testing.assert_array_equal(np.round(arr * 255).astype(np.uint8), np.stack([np.asarray(p) for p in pil]))
    np.testing.assert_array_equal(ten.permute(0, 2, 3, 1).numpy(), arr)


def test_return_dict_false_gives_a_tuple_as_diffusers_does(pipe):
    images, nsfw = _call(pipe, seed=4, return_dict=False)
    out = _call(pipe, seed=4)
    assert nsfw is None and out.nsfw_content_detected is None
    np.testing.assert_array_equal(np.asarray(images[0]), np.asarray(out.images[0]))
    assert out.nfe[0] > STEPS and out.residual_final[0] <= out.residual_init[0]


def test_arrays_and_tensors_are_read_as_diffusers_reads_them(pipe):
    """PIL, a float array (H, W, 3) in [0, 1] and a float tensor (3, H, W) in [-1, 1] are the same image."""
    pil = _photo()
    arr = np.asarray(pil).astype(np.float32) / 255
    ten = torch.from_numpy(arr).permute(2, 0, 1) * 2 - 1
    mask = (np.asarray(_hole()) > 0).astype(np.float32)
    out = pipe(image=[pil, arr, ten], mask_image=[_hole(), mask, torch.from_numpy(mask)[None]],
               seed=[5, 5, 5], num_inference_steps=STEPS)
    first = np.asarray(out.images[0])
    for other in out.images[1:]:
        np.testing.assert_allclose(np.asarray(other), first, atol=1)


def test_height_and_width_resize_image_and_mask(pipe):
    out = pipe(image=_photo(96), mask_image=_hole(96), height=SIDE, width=SIDE, num_inference_steps=STEPS)
    assert out.images[0].size == (SIDE, SIDE)
    with pytest.raises(ValueError, match=r"height=60: must be a positive multiple of 16"):
        _call(pipe, height=60)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_diffusers_arguments_fail_naming_themselves(pipe, name):
    with pytest.raises(ValueError, match=f"^{name} is not supported: "):
        _call(pipe, **{name: 1})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strength=0.5), r"strength=0.5 is not supported: this sampler always starts from pure noise"),
        (dict(seed=0, generator=torch.Generator()), "give seed or generator, not both"),
        (dict(output_type="latent"), "output_type='latent' is not available: .* pasted back"),
        (dict(output_type="numpy"), "allowed: 'pil', 'np', 'pt'"),
        (dict(negative_prompt="blurry"), "negative_prompt='blurry' is not supported"),
        (dict(num_images_per_prompt=0), "num_images_per_prompt=0"),
        (dict(seed=[1, 2]), "got 2 seeds for 1 images"),
    ],
)
def test_what_the_sampler_cannot_do_fails_with_the_reason(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _call(pipe, **kwargs)


def test_a_misspelt_argument_is_a_type_error_naming_it(pipe):
    with pytest.raises(TypeError, match="unexpected keyword argument 'guidance_scal'"):
        _call(pipe, guidance_scal=2.0)


def test_diffusers_defaults_for_unsupported_features_are_accepted():
    """None is diffusers' "off" for every refused argument, and an empty negative prompt is our guidance."""
    check_call(dict.fromkeys(UNSUPPORTED), strength=1.0, negative_prompt=["", ""], output_type="pil",
               num_images_per_prompt=1)


@pytest.mark.parametrize(
    "mask",
    [torch.ones(2, 1, 8, 12), torch.ones(2, 8, 12), np.ones((2, 8, 12, 1)), np.ones((2, 8, 12))],
)
def test_batched_masks_split_into_one_per_image(mask):
    images, masks, prompts = batch_inputs(torch.rand(2, 3, 8, 12), mask, "p", per_prompt=2)
    assert [m.shape for m in masks] == [(8, 12)] * 4 and [x.shape for x in images] == [(8, 12, 3)] * 4
    assert prompts == ["p"] * 4


def test_single_inputs_broadcast_and_mismatched_lists_fail():
    images, masks, prompts = batch_inputs(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), ["a", "b", "c"], 1)
    assert len(images) == len(masks) == 3 and prompts == ["a", "b", "c"]
    with pytest.raises(ValueError, match="mask_image: got 2 entries for 3 images"):
        batch_inputs([np.zeros((8, 8, 3), np.uint8)] * 3, [np.zeros((8, 8))] * 2, None, 1)
    with pytest.raises(ValueError, match=r"float values must be in \[0, 1\]"):
        batch_inputs(np.full((8, 8, 3), 200.0), np.zeros((8, 8)), None, 1)
