"""The sampler actor as a plain class: loads the model once, restores a dict batch, no Ray needed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from pipeline_testdata import FAST, hole, photo, png

from fcs import SamplerConfig
from pipeline.actor import OUTPUT_COLUMNS, TaskActor
from pipeline.stages import prepare
from pipeline.storage import Storage


@pytest.fixture(scope="module")
def sampler(model_dirs, device) -> TaskActor:
    return TaskActor(str(model_dirs["tiny"]), config=SamplerConfig(**FAST), device=device, dtype="float32")


def _batch(rows, tmp_path) -> dict:
    table = prepare(pa.Table.from_pylist(rows), storage=Storage.from_uri(str(tmp_path)))
    return {name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names}


def test_restores_a_batch_and_records_metrics(sampler, tmp_path):
    rows = [{"id": f"i{k}", "image": png(photo(seed=k)), "mask": png(hole())} for k in range(3)]
    rows.append({"id": "odd", "image": png(photo(44, 60)), "mask": png(hole(44, 60))})
    out = sampler(_batch(rows, tmp_path))
    assert set(out) == set(OUTPUT_COLUMNS) and len(out["id"]) == 4
    for i in range(4):
        assert out["error"][i] is None
        h, w = out["height"][i], out["width"][i]
        restored = np.frombuffer(out["out"][i], np.uint8).reshape(h, w, 3)
        original = photo(h, w, seed=i) if i < 3 else photo(44, 60)
        keep = hole(h, w) == 0
        assert np.array_equal(restored[keep], original[keep])  # kept pixels survive bit for bit
        assert out["nfe"][i] == FAST["steps"] * (1 + 2 * FAST["newton_steps"])
        for name in ("sample_s", "residual_init", "peak_mem_mb"):
            assert out[name][i] > 0, name
        assert out["finished_at"][i] >= out["started_at"][i] > 0
        assert out["device"][i] == str(sampler.denoiser.device) and out["worker"][i].startswith("pid-")
    assert list(out["batch_size"]) == [3, 3, 3, 1]  # equal sizes share one sampler call


def test_error_rows_pass_through_untouched(sampler, tmp_path):
    rows = [{"id": "bad", "image": b"nope", "mask": png(hole())},
            {"id": "good", "image": png(photo()), "mask": png(hole())}]
    out = sampler(_batch(rows, tmp_path))
    assert out["error"][0].startswith("decode:") and out["out"][0] is None and out["worker"][0] is None
    assert out["error"][1] is None and out["out"][1] is not None


def test_a_failing_batch_is_retried_item_by_item(sampler, tmp_path, monkeypatch):
    real = sampler.task.run

    def flaky(denoiser, items, *args, **kwargs):
        if len(items) > 1 or items.images[0].shape[0] == 44:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(denoiser, items, *args, **kwargs)

    monkeypatch.setattr(sampler, "task", replace(sampler.task, run=flaky))
    rows = [{"id": "a", "image": png(photo()), "mask": png(hole())},
            {"id": "b", "image": png(photo(44, 60)), "mask": png(hole(44, 60))}]
    out = sampler(_batch(rows, tmp_path))
    assert out["error"][0] is None and out["out"][0] is not None
    assert out["error"][1] == "sample: RuntimeError: CUDA out of memory (simulated)"


def test_nan_output_becomes_a_sample_error_row(sampler, tmp_path, monkeypatch):
    import fcs

    def nan_result(denoiser, items, *args, **kwargs):
        return [fcs.TaskResult(image=None, nfe=6, residual_init=1.0, residual_final=float("nan"), sample_s=0.1,
                               batch_size=len(items), error="sample: output is not finite (NaN or Inf)")
                for _ in items.images]

    monkeypatch.setattr(sampler, "task", replace(sampler.task, run=nan_result))
    out = sampler(_batch([{"id": "a", "image": png(photo()), "mask": png(hole())}], tmp_path))
    assert out["error"][0].startswith("sample: output is not finite") and out["out"][0] is None
    assert out["nfe"][0] == 6


def test_a_short_batch_padded_to_the_batch_size_gives_the_same_rows(model_dirs, device, tmp_path, count_unet):
    config = SamplerConfig(**FAST)
    plain = TaskActor(str(model_dirs["tiny"]), config=config, device=device, dtype="float32")
    padded = TaskActor(str(model_dirs["tiny"]), config=config, device=device, dtype="float32", pad_to=4)
    batch = _batch([{"id": f"i{k}", "image": png(photo(seed=k)), "mask": png(hole())} for k in range(3)], tmp_path)
    a = plain(batch)
    with count_unet(padded.denoiser) as seen:
        b = padded(batch)
    assert set(seen.batch_sizes) == {4}  # the UNet saw one shape: 3 rows + 1 copy
    assert list(b["id"]) == list(a["id"]) == ["i0", "i1", "i2"]
    assert list(b["batch_size"]) == [3] * 3  # the metrics describe the real rows, not the copy
    for x, y in zip(a["out"], b["out"], strict=True):
        diff = np.abs(np.frombuffer(x, np.uint8).astype(int) - np.frombuffer(y, np.uint8).astype(int))
        assert diff.max() <= 1  # fp32 batch-size round-off, in 8-bit pixels


def test_an_image_smaller_than_the_model_takes_is_a_validate_error_row(sampler, tmp_path):
    """A 1x1 image (and one of exactly the tiny model's 16-px grid, whose coarsest group norm would see a
    single value) gets a clear validate: row naming the minimum; the others in the batch are restored."""
    assert sampler.min_side == 17
    rows = [{"id": "dot", "image": png(photo(1, 1)), "mask": png(np.full((1, 1), 255, np.uint8))},
            {"id": "grid", "image": png(photo(16, 16)), "mask": png(hole(16, 16))},
            {"id": "ok", "image": png(photo(17, 20)), "mask": png(hole(17, 20))}]
    out = sampler(_batch(rows, tmp_path))
    assert out["error"][0] == ("validate: image is 1x1, smaller than this model's minimum of 17 pixels per side; "
                               "upscale it")
    assert out["error"][1].startswith("validate: image is 16x16, smaller than")
    assert out["error"][2] is None and out["out"][2] is not None
