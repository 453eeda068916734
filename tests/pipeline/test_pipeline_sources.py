"""Input discovery on the driver: Parquet shards or images/ + masks/ folders, ids checked up front."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_testdata import good_rows, hole, photo, png, write_shards

from pipeline.sources import discover, split_shards
from pipeline.sources.parquet import read_pending
from pipeline.stages import prepare
from pipeline.storage import Storage


def test_parquet_shards_are_found_recursively_skipping_hidden(tmp_path):
    write_shards(tmp_path / "a", good_rows(5), per_shard=2)
    write_shards(tmp_path / "_tmp", good_rows(2, prefix="hidden"))
    inputs = discover(Storage.from_uri(str(tmp_path)))
    assert inputs.kind == "parquet" and len(inputs.data.files) == 3
    assert sorted(inputs.ids.to_pylist()) == [f"item-{i:03d}" for i in range(5)]


def test_empty_shards_are_not_read_and_do_not_decide_the_schema(tmp_path):
    """An empty Parquet file with no columns that sorts first: the other shards' columns count, and
    no shard without rows is handed to the reader."""
    pq.write_table(pa.table({}), tmp_path / "a-empty.parquet")
    write_shards(tmp_path / "b", good_rows(3))
    pq.write_table(pa.Table.from_pylist(good_rows(1)).slice(0, 0), tmp_path / "c-no-rows.parquet")
    write_shards(tmp_path / "d", good_rows(2, prefix="more"))
    inputs = discover(Storage.from_uri(str(tmp_path)))
    assert [Path(f).parent.name for f in inputs.data.files] == ["b", "d"]
    assert {"id", "image", "mask"} <= set(inputs.schema.names)
    by_shard = dict(zip(inputs.ids.to_pylist(), inputs.data.id_files.to_pylist(), strict=True))
    assert by_shard == {"item-000": 0, "item-001": 0, "item-002": 0, "more-000": 1, "more-001": 1}


def test_single_shard_file(tmp_path):
    (path,) = write_shards(tmp_path, good_rows(3))
    assert len(discover(Storage.from_uri(str(path))).ids) == 3


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "image": b"x", "mask": b"y"}, {"id": "a", "image": b"x", "mask": b"y"}], "ids must be unique"),
    ([{"id": None, "image": b"x", "mask": b"y"}], "null id"),
    ([{"id": "a", "image": b"x"}], "lack column"),
    ([{"id": 1.0, "image": b"x", "mask": b"y"}], "use strings"),  # 1.0 would not match itself on resume
])
def test_bad_shards_fail_fast(tmp_path, rows, message):
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=message):
        discover(Storage.from_uri(str(tmp_path)))


def test_missing_or_empty_input_fails_fast(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        discover(Storage.from_uri(str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="no .parquet shards and no images/ folder"):
        discover(Storage.from_uri(str(tmp_path)))


def test_folder_matches_masks_by_stem_and_keeps_orphans(tmp_path):
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    (tmp_path / "images" / "a.png").write_bytes(png(photo()))
    (tmp_path / "masks" / "a.png").write_bytes(png(hole()))
    (tmp_path / "images" / "sub" / "b.jpg").write_bytes(png(photo()))
    (tmp_path / "masks" / "sub" / "b.png").write_bytes(png(hole()))
    (tmp_path / "images" / "no-mask.png").write_bytes(png(photo()))
    (tmp_path / "masks" / "no-image.png").write_bytes(png(hole()))
    (tmp_path / "images" / "notes.txt").write_text("ignored")
    inputs = discover(Storage.from_uri(str(tmp_path)))
    rows = {r["id"]: r for r in inputs.data.table.to_pylist()}
    assert sorted(rows) == ["a", "no-image", "no-mask", "sub/b"]
    assert (rows["sub/b"]["image_path"].endswith("images/sub/b.jpg")
            and rows["sub/b"]["mask_path"].endswith("masks/sub/b.png"))
    assert rows["no-mask"]["mask_path"] is None and rows["no-image"]["image_path"] is None
    errors = {r["id"]: r["error"] for r in prepare(inputs.data.table, storage=inputs.storage).to_pylist()}
    assert errors["no-mask"] == "read: mask is missing (no file in masks/ has this id's stem)"
    assert errors["no-image"] == "read: image is missing (no file in images/ has this id's stem)"


def test_a_file_name_that_is_not_utf8_is_an_error_row_not_a_crash(tmp_path):
    """A Latin-1 name (caf\xe9.png) on a local disk: discovery goes on; the item's row names why."""
    import os

    for folder, data in (("images", png(photo())), ("masks", png(hole()))):
        os.makedirs(tmp_path / folder)
        with open(os.path.join(os.fsencode(tmp_path / folder), b"caf\xe9.png"), "wb") as f:
            f.write(data)
        (tmp_path / folder / "ok.png").write_bytes(data)
    store = Storage.from_uri(str(tmp_path))
    inputs = discover(store)
    assert inputs.ids.to_pylist() == ["caf\\xe9", "ok"]
    out = {r["id"]: r["error"] for r in prepare(inputs.data.table, storage=store).to_pylist()}
    assert out == {"caf\\xe9": "read: image is missing (its file name is not valid UTF-8; rename the file)", "ok": None}


def test_folder_with_two_files_per_stem_fails_fast(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"1")
    (tmp_path / "images" / "a.jpg").write_bytes(b"2")
    with pytest.raises(ValueError, match="match several files"):
        discover(Storage.from_uri(str(tmp_path)))


def test_resume_reads_only_what_is_pending(tmp_path):
    """Shards all done are skipped, untouched ones read whole, and a partly done shard's task gets its
    own done ids only (never the whole done set)."""
    rows = good_rows(9)
    shards = write_shards(tmp_path, rows, per_shard=3)
    store = Storage.from_uri(str(tmp_path))
    inputs = discover(store)
    ids = [r["id"] for r in rows]
    untouched, partial = split_shards(inputs, pa.array(ids[:4]))  # shard 0 done, shard 1 one third done
    assert untouched == [str(shards[2])]
    assert partial == [(str(shards[1]), [ids[3]])]
    batch = pa.table({"file": [partial[0][0]], "done": [partial[0][1]]})
    assert read_pending(batch, store).column("id").to_pylist() == ids[4:6]
    assert split_shards(inputs, pa.array([], pa.string())) == ([str(s) for s in shards], [])


def test_folder_and_parquet_inputs_on_s3(s3_endpoint, bucket):
    import io

    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.pipe({f"{bucket}/f/images/a.png": png(photo()), f"{bucket}/f/masks/a.png": png(hole()),
             f"{bucket}/f/images/b.webp": png(photo())})
    store = Storage.from_uri(f"s3://{bucket}/f", s3_endpoint)
    inputs = discover(store)
    assert inputs.kind == "folder" and sorted(inputs.ids.to_pylist()) == ["a", "b"]
    rows = {r["id"]: r for r in prepare(inputs.data.table, storage=store).to_pylist()}
    assert rows["a"]["error"] is None and rows["b"]["error"].startswith("read: mask is missing")

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(good_rows(3)), buf)
    fs.pipe_file(f"{bucket}/p/part/s.parquet", buf.getvalue())
    assert len(discover(Storage.from_uri(f"s3://{bucket}/p", s3_endpoint)).ids) == 3
