"""``fcs inpaint`` on a real photo with the tiny model (issue 2, item 8), and its error path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZE = (61, 45)  # (width, height): neither a multiple of 8 nor of the tiny UNet's 16


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """scikit-image's astronaut, resized to 61x45, and a mask over the face; written as PNGs."""
    from skimage import data

    folder = tmp_path_factory.mktemp("cli")
    image = Image.fromarray(data.astronaut()).resize(SIZE, Image.Resampling.LANCZOS)
    mask = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    mask[5:25, 20:45] = 255
    image.save(folder / "astronaut.png")
    Image.fromarray(mask).save(folder / "mask.png")
    return folder / "astronaut.png", folder / "mask.png", np.asarray(image), mask


def test_fcs_inpaint_writes_a_png_of_the_input_size(photo, fcs_cache, device, tmp_path):
    """Acceptance 8: run as users do (a subprocess, built-in model name 'tiny')."""
    image_path, mask_path, image, mask = photo
    out = tmp_path / "out" / "restored.png"
    command = [
        sys.executable, "-m", "jobs.cli", "inpaint", "--image", str(image_path), "--mask", str(mask_path),
        "--out", str(out), "--model", "tiny", "--preset", "paper", "--steps", "3", "--newton-steps", "2", "--seed", "1",
        "--device", device, "--dtype", "float32",
    ]
    env = {**os.environ, "FCS_CACHE": str(fcs_cache), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists()
    with Image.open(out) as written:
        assert written.format == "PNG"
        assert written.size == SIZE and written.mode == "RGB"
        restored = np.asarray(written)
    kept = mask == 0
    np.testing.assert_array_equal(restored[kept], image[kept])
    assert (restored[~kept] != image[~kept]).any()
    assert "nfe=15" in proc.stderr  # S·(1 + 2K) = 3·5, logged
    assert "torchvision" not in proc.stderr  # transformers' PIL-fallback notice is filtered (fcs.loading)


def test_fcs_inpaint_in_process_with_a_model_folder(photo, model_dirs, device, tmp_path):
    """The same command through jobs.cli.main, with a local diffusers folder as --model."""
    from jobs.cli import main

    image_path, mask_path, image, _ = photo
    out = tmp_path / "restored.png"
    code = main([
        "inpaint", "--image", str(image_path), "--mask", str(mask_path), "--out", str(out),
        "--model", str(model_dirs["tiny-v"]), "--steps", "2", "--newton-steps", "1", "--device", device,
        "--dtype", "float32",
    ])
    assert code == 0
    with Image.open(out) as written:
        assert written.size == SIZE


def test_fcs_inpaint_bad_mask_exits_2_with_the_reason(photo, model_dirs, device, tmp_path, capsys):
    from jobs.cli import main

    image_path, _, _, _ = photo
    small_mask = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small_mask)
    code = main([
        "inpaint", "--image", str(image_path), "--mask", str(small_mask), "--out", str(tmp_path / "x.png"),
        "--model", str(model_dirs["tiny"]), "--steps", "1", "--device", device,
    ])
    assert code == 2
    err = capsys.readouterr().err
    assert "fcs inpaint: error:" in err and "10x10" in err and "61x45" in err
    assert not (tmp_path / "x.png").exists()


def test_fcs_inpaint_corrupt_image_exits_2(photo, model_dirs, device, tmp_path, capsys):
    from jobs.cli import main

    _, mask_path, _, _ = photo
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    code = main([
        "inpaint", "--image", str(bad), "--mask", str(mask_path), "--out", str(tmp_path / "x.png"),
        "--model", str(model_dirs["tiny"]), "--steps", "1", "--device", device,
    ])
    assert code == 2
    assert "cannot decode image" in capsys.readouterr().err
