"""Image and mask IO: every common input normalised to RGB uint8, clear errors on bad bytes, EXIF
orientation, padding that never distorts, and a composite that keeps pixels exact."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fcs.images import (
    composite,
    encode_png,
    open_image,
    pad_to_multiple,
    rgb_to_tensor,
    tensor_to_rgb,
    to_mask_array,
    to_rgb_array,
)


def _png(img: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **params)
    return buf.getvalue()


def test_rgba_is_composited_over_white():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    rgba[0, 1] = (10, 20, 30, 0)  # transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    rgb = to_rgb_array(_png(Image.fromarray(rgba, "RGBA")))
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[0, 2])


def test_grayscale_and_palette_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = to_rgb_array(_png(Image.fromarray(grey, "L")))
    assert rgb.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)
    palette = Image.fromarray(grey, "L").convert("P")
    np.testing.assert_array_equal(to_rgb_array(_png(palette))[..., 0], grey)
    grey_alpha = Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), "LA")
    np.testing.assert_array_equal(to_rgb_array(_png(grey_alpha))[..., 1], grey)


def test_16_bit_png_is_rescaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    data = _png(Image.fromarray(values))
    assert open_image(data).mode.startswith("I")
    rgb = to_rgb_array(data)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_dark_16_bit_png_is_not_brightened():
    """A 16-bit image whose values all fit in 8 bits is still 16-bit data (value / 65535)."""
    values = np.array([[0, 100, 200, 255]], dtype=np.uint16)
    rgb = to_rgb_array(_png(Image.fromarray(values)))
    assert rgb.max() <= 1


def test_16_bit_mask():
    values = np.array([[0, 65535, 32768]], dtype=np.uint16)
    mask = to_mask_array(_png(Image.fromarray(values)))
    np.testing.assert_allclose(mask, [[0, 1, 32768 / 65535]], atol=1e-6)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["empty", "text", "png-header-only"],
)
def test_corrupt_bytes_raise_value_error_with_reason(data):
    with pytest.raises(ValueError, match="cannot decode image: \\w+") as info:
        to_rgb_array(data)
    assert "\n" not in str(info.value)


def test_truncated_png_raises_value_error():
    data = _png(Image.fromarray(np.full((64, 64, 3), 90, np.uint8)))
    with pytest.raises(ValueError, match="cannot decode image"):
        to_rgb_array(data[: len(data) // 2])


def test_missing_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot decode image"):
        to_rgb_array(tmp_path / "nope.png")


def test_exif_orientation_is_applied():
    """Orientation 6 = rotate 90° clockwise to display: a 4x2 stored image shows as 2x4."""
    stored = np.zeros((2, 4, 3), np.uint8)
    stored[0, 0] = (255, 0, 0)  # red at the stored top-left
    img = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb = to_rgb_array(_png(img, exif=exif.tobytes()))
    assert rgb.shape == (4, 2, 3)
    assert tuple(rgb[0, 1]) == (255, 0, 0)  # top-left goes to top-right


def test_sources_array_pil_path_bytes_agree(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    for source in (array, Image.fromarray(array), path, str(path), path.read_bytes()):
        np.testing.assert_array_equal(to_rgb_array(source), array)


def test_mask_conventions():
    white_hole = np.zeros((4, 4), np.uint8)
    white_hole[1:3, 1:3] = 255
    mask = to_mask_array(_png(Image.fromarray(white_hole)))
    assert mask.dtype.kind == "f" and mask.shape == (4, 4)
    np.testing.assert_array_equal(mask, white_hole / 255.0)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1:3, 1:3] = 255
    np.testing.assert_array_equal(to_mask_array(_png(Image.fromarray(colour))), mask)
    alpha_only = np.zeros((4, 4, 4), np.uint8)
    alpha_only[..., 3] = white_hole
    np.testing.assert_array_equal(to_mask_array(_png(Image.fromarray(alpha_only, "RGBA"))), mask)


def test_tensor_round_trip_is_exact():
    array = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    x = rgb_to_tensor(array)
    assert x.shape == (3, 6, 5) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(tensor_to_rgb(x), array)
    assert tensor_to_rgb(torch.full((3, 1, 1), 2.0)).max() == 255  # clamped, not wrapped
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(array)))), array)


@pytest.mark.parametrize("size", [(37, 50), (16, 16), (1, 9)])
def test_pad_to_multiple_then_crop_is_identity(size):
    h, w = size
    x = torch.rand(2, 3, h, w)
    padded = pad_to_multiple(x, 16)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert padded.shape[-2] - h < 16 and padded.shape[-1] - w < 16
    assert torch.equal(padded[..., :h, :w], x)
    assert torch.equal(padded[..., -1, :w], x[..., -1, :].expand_as(padded[..., -1, :w]))  # edge replicated
    mask = pad_to_multiple(torch.rand(2, 1, h, w), 8)
    assert mask.shape[-2:] == (h + (-h % 8), w + (-w % 8))


def test_composite_keeps_zero_mask_pixels_and_fills_the_hole():
    rng = np.random.default_rng(2)
    original = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    mask = np.zeros((40, 44))
    mask[4:36, 6:38] = 1.0
    mask[4:36, 4:6] = 0.3  # a soft edge
    for feather in (0, 2, 4):
        out = composite(original, generated, mask, feather)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out[mask == 0], original[mask == 0])
        deep = slice(4 + 2 * feather + 1, 36 - 2 * feather - 1), slice(6 + 2 * feather + 1, 38 - 2 * feather - 1)
        np.testing.assert_array_equal(out[deep], generated[deep])  # farther than 2 feathers from the edge
    np.testing.assert_array_equal(composite(original, generated, mask, 0)[mask == 1], generated[mask == 1])


def test_composite_removes_a_thin_scratch_completely():
    """A 1-px scratch of damage (255) in flat grey: the output there follows the generated pixel
    (here equal to the surroundings), with no share of the old damage left."""
    original = np.full((20, 20, 3), 100, np.uint8)
    original[:, 10] = 255  # the scratch
    generated = np.full((20, 20, 3), 100, np.uint8)
    mask = np.zeros((20, 20))
    mask[:, 10] = 1.0
    for feather in (0, 2, 4):
        out = composite(original, generated, mask, feather)
        assert np.abs(out[:, 10].astype(int) - 100).max() <= 1, feather
        np.testing.assert_array_equal(out[mask == 0], original[mask == 0])


def test_composite_hides_the_seam_of_a_colour_offset():
    """Generated = original + 40 everywhere (a typical colour drift): without the seam offset the
    border jumps by 40; with it the hole meets the kept pixels, and deep inside stays generated."""
    rng = np.random.default_rng(3)
    original = rng.integers(60, 120, (40, 40, 3)).astype(np.uint8)
    generated = (original.astype(int) + 40).astype(np.uint8)
    mask = np.zeros((40, 40))
    mask[10:30, 10:30] = 1.0
    hard = composite(original, generated, mask, 0)
    soft = composite(original, generated, mask, 3)
    step = lambda out: out[10:30, 10].astype(float).mean() - out[10:30, 9].astype(float).mean()  # noqa: E731
    assert step(hard) > 30  # the mean jump across the left border (texture averages out)
    assert abs(step(soft)) < step(hard) / 3
    np.testing.assert_array_equal(soft[17:23, 17:23], generated[17:23, 17:23])
