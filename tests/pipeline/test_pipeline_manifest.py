"""Manifest input: a table of object URIs (Parquet or CSV), fetched per row, never listing the bucket."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pipeline_testdata import FAST, assert_exactly_once, hole, photo, png

import pipeline
from pipeline import carry, output
from pipeline.sources import discover
from pipeline.sources.manifest import object_storage
from pipeline.stages import prepare
from pipeline.storage import Storage


def test_csv_manifest_with_relative_paths(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png(photo()))
    (tmp_path / "img" / "m.png").write_bytes(png(hole()))
    (tmp_path / "list.csv").write_text("id,image_uri,mask_uri,seed,licence\n"
                                       "007,img/a.png,img/m.png,3,CC0\n"
                                       "8,img/gone.png,img/m.png,,CC-BY\n"
                                       "9,,img/m.png,,CC-BY\n")
    inputs = discover(Storage.from_uri(str(tmp_path / "list.csv")))
    assert inputs.kind == "manifest" and inputs.ids.to_pylist() == ["007", "8", "9"]  # ids stay strings
    assert inputs.storage.root == str(tmp_path)  # relative URIs resolve against the manifest's folder
    assert carry.carried_schema(inputs.schema, "restore").names == ["image_uri", "mask_uri", "licence"]
    rows = {r["id"]: r for r in prepare(inputs.data.table, storage=inputs.storage).to_pylist()}
    assert rows["007"]["error"] is None and rows["007"]["seed"] == 3
    assert rows["8"]["error"].startswith("read: cannot read image 'img/gone.png': FileNotFoundError")
    assert rows["9"]["error"] == "read: image is missing (no image_uri)"


@pytest.mark.parametrize("table, message", [
    ({"id": ["a"], "image_uri": ["x.png"]}, "lacks column"),  # restore needs mask_uri
    ({"id": ["a", "a"], "image_uri": ["x", "y"], "mask_uri": ["m", "m"]}, "ids must be unique"),
    ({"id": [None], "image_uri": ["x"], "mask_uri": ["m"]}, "1 row.* null or empty id"),
    ({"id": ["a", ""], "image_uri": ["x", "y"], "mask_uri": ["m", "m"]}, "1 row.* null or empty id"),
    ({"id": ["a", "b"], "image_uri": ["s3://b/x", "gs://b/y"], "mask_uri": ["s3://b/m"] * 2}, "several filesystems"),
    ({"id": ["a"], "image_uri": ["https://example.com/x.jpg"], "mask_uri": ["m"]}, "supported: s3://"),
])
def test_structural_problems_fail_fast(tmp_path, table, message):
    pq.write_table(pa.table(table), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=message):
        discover(Storage.from_uri(str(tmp_path / "m.parquet")), input_format="manifest")


def test_objects_on_another_filesystem_than_the_manifest(tmp_path):
    local = Storage.from_uri(str(tmp_path))
    on_s3 = object_storage(local, pa.array(["s3://photos/a.jpg", "s3a://photos/b.jpg"]), "http://127.0.0.1:9")
    assert (on_s3.protocol, on_s3.endpoint) == ("s3", "http://127.0.0.1:9")
    assert on_s3.resolve("s3://photos/a.jpg") == "photos/a.jpg"
    with pytest.raises(ValueError, match="several filesystems"):
        object_storage(local, pa.array(["s3://photos/a.jpg", "relative/b.jpg"]))


def test_manifest_on_s3_one_row_per_id_with_a_missing_object(ray_address, s3_endpoint, bucket):
    """Acceptance: a Parquet manifest of s3:// URIs (one object missing) -> one row per id, metadata kept."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    ids = [f"m{i}" for i in range(5)]
    for i, item in enumerate(ids):
        if item != "m3":  # m3's image was never uploaded
            fs.pipe_file(f"{bucket}/objects/{item}.png", png(photo(seed=i)))
    fs.pipe_file(f"{bucket}/objects/mask.png", png(hole()))
    manifest = pa.table({"id": ids, "image_uri": [f"s3://{bucket}/objects/{i}.png" for i in ids],
                         "mask_uri": [f"s3://{bucket}/objects/mask.png"] * 5, "caption": [f"cap {i}" for i in ids],
                         "width": pa.array([64] * 5, pa.int32())})
    buf = io.BytesIO()
    pq.write_table(manifest, buf)
    fs.pipe_file(f"{bucket}/manifest/list.parquet", buf.getvalue())
    cfg = pipeline.JobConfig(model="tiny", input=f"s3://{bucket}/manifest/list.parquet", output=f"s3://{bucket}/out",
                             s3_endpoint=s3_endpoint, batch_size=2, sampler=FAST)
    summary = pipeline.run(cfg)
    assert (summary["inputs"], summary["ok"], summary["error"], summary["duplicates"]) == (5, 4, 1, 0)

    schema = carry.output_schema("restore", manifest.schema.remove(0))
    table = output.read_output(Storage.from_uri(cfg.output, s3_endpoint), columns=schema.names, schema=schema)
    assert_exactly_once(table, ids)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["m3"]["error"].startswith(f"read: cannot read image 's3://{bucket}/objects/m3.png'")
    for i, item in enumerate(ids):
        row = rows[item]
        assert (row["caption"], row["width"], row["image_uri"]) == (f"cap {item}", 64, manifest["image_uri"][i].as_py())
        if item != "m3":
            assert row["status"] == "ok"
            assert np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).shape == (64, 64, 3)
