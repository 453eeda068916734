"""The embedding API: ``pipeline.apply`` on a user's own ``ray.data.Dataset``, written by the user's sink."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from PIL import Image
from pipeline_testdata import FAST, assert_exactly_once, good_rows

import pipeline


def test_a_hand_built_dataset_through_apply_and_write_parquet(ray_address, tmp_path):
    import ray

    rows = good_rows(5)
    rows[2]["image"] = b"not an image"
    table = pa.Table.from_pylist([{**r, "caption": f"caption {r['id']}", "tags": [r["id"], "x"]} for r in rows])
    ds = ray.data.from_arrow(table).repartition(2)
    cfg = pipeline.JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(tmp_path / "out"), batch_size=2,
                             sampler=FAST)
    out = pipeline.apply(ds, cfg)
    out.write_parquet(str(tmp_path / "written"))

    written = pads.dataset(str(tmp_path / "written")).to_table()
    assert_exactly_once(written, [r["id"] for r in rows])
    assert written.schema.names == pipeline.TASKS["restore"].schema.names + ["caption", "tags"]
    assert written.schema.field("tags").type == pa.list_(pa.string())  # carried with its input type
    for row in written.to_pylist():
        assert row["caption"] == f"caption {row['id']}" and row["tags"] == [row["id"], "x"]
        if row["id"] == "item-002":
            assert row["status"] == "error" and row["error"].startswith("decode: cannot decode image")
            continue
        assert row["status"] == "ok"
        assert np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).shape == (64, 64, 3)


def test_keep_columns_and_missing_columns_are_checked_before_any_work(ray_address, tmp_path):
    import ray

    ds = ray.data.from_items([{"id": "a", "image": b"x", "caption": "c", "licence": "CC0"}])
    cfg = pipeline.JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(tmp_path / "out"), sampler=FAST)
    with pytest.raises(ValueError, match="dataset lacks column"):
        pipeline.apply(ds, cfg)  # restore needs a mask
    superres = pipeline.JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                                  task="superres",
                                  keep_columns=["nope"])
    with pytest.raises(ValueError, match="'nope' not among the input columns"):
        pipeline.apply(ds, superres)
