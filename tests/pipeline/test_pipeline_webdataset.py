"""WebDataset input: tar shards in img2dataset layout, on disk and on a real S3 endpoint (moto)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from input_kinds import CORRUPT_KEY, MASKLESS_KEY, img2dataset_shard, metadata
from PIL import Image
from pipeline_testdata import FAST, assert_exactly_once, hole, photo, png, read_rows

import pipeline
from pipeline import carry, output
from pipeline.sources import discover
from pipeline.sources.webdataset import Suffixes, expand_braces, split_member, to_rows
from pipeline.storage import Storage


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_brace_patterns_expand_like_the_shell():
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    for bad, message in (("s/{3..1}.tar", "runs backwards"), ("s/{x}.tar", "neither a range"),
                         ("s/{0..1.tar", "unbalanced")):
        with pytest.raises(ValueError, match=message):
            expand_braces(bad)


def test_members_split_at_the_first_dot_of_the_file_name():
    assert split_member("00042.mask.png") == ("00042", "mask.png")
    assert split_member("dir.v2/00042.jpg") == ("dir.v2/00042", "jpg")
    assert split_member("README") is None and split_member(".hidden.txt") is None
    assert split_member("x/.DS_Store") is None and split_member("x/._a.png") is None  # Ray's regex: key "x/"
    assert split_member(".git/a.png") is None


def test_hidden_members_in_folders_are_skipped_by_discovery_and_reader(ray_address, tmp_path):
    """macOS litter inside a shard's folders (.DS_Store, AppleDouble ._ files between a key's
    members) neither makes an extra row nor breaks the job: one ok row per real key."""
    image, mask = png(photo()), png(hole())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "00000.tar").write_bytes(_tar([
        ("x/._a.png", b"apple double"), ("x/a.png", image), ("x/a.mask.png", mask), ("x/.DS_Store", b"finder"),
        ("x/._b.png", b"apple double"), ("x/b.png", image), ("x/b.mask.png", mask)]))
    summary = pipeline.run(pipeline.JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(tmp_path / "out"),
                                              batch_size=2, sampler=FAST))
    assert (summary["inputs"], summary["ok"], summary["error"], summary["rows"]) == (2, 2, 0, 2)
    assert_exactly_once(read_rows(str(tmp_path / "out")), ["x/a", "x/b"])


def test_resume_reads_only_shards_not_all_done_with_their_own_done_ids(tmp_path):
    """Discovery knows each key's shard, so a rerun skips shards all done and filters the partly done
    ones against their done ids only (not every committed id)."""
    from pipeline.sources import split_shards

    keys = []
    for shard in range(3):
        data, shard_keys = img2dataset_shard(shard)
        (tmp_path / f"{shard:05d}.tar").write_bytes(data)
        keys.append(shard_keys)
    inputs = discover(Storage.from_uri(str(tmp_path)))
    assert inputs.data.id_files.to_pylist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    done = pa.array(keys[0] + keys[1][:1], pa.string())
    untouched, partial = split_shards(inputs, done)
    assert [Path(f).name for f in untouched] == ["00002.tar"]
    assert [(Path(f).name, ids) for f, ids in partial] == [("00001.tar", keys[1][:1])]


def test_discovery_reads_keys_and_suffixes_from_the_headers(tmp_path):
    for shard in range(2):
        data, _ = img2dataset_shard(shard)
        (tmp_path / f"{shard:05d}.tar").write_bytes(data)
    (tmp_path / "00000.parquet").write_bytes(b"img2dataset's metadata table, not a shard")
    inputs = discover(Storage.from_uri(str(tmp_path)))  # a folder of .tar: WebDataset, the .parquet ignored
    assert inputs.kind == "webdataset" and len(inputs.data.files) == 2
    assert inputs.ids.to_pylist() == ["000000000", "000000001", "000000002", "000010000", "000010001", "000010002"]
    assert inputs.schema == pa.schema([("id", pa.string()), ("image", pa.binary()), ("mask", pa.binary()),
                                       ("json", pa.string()), ("txt", pa.string())])
    pattern = discover(Storage.from_uri(str(tmp_path / "{00000..00001}.tar")))
    assert pattern.ids.equals(inputs.ids)


@pytest.mark.parametrize("shards, message", [
    ([[("a.jpg", b"1")], [("a.jpg", b"2")]], "ids must be unique"),           # one key in two shards
    ([[("a.jpg", b"1"), ("b.jpg", b"2"), ("a.txt", b"3")]], "not together"),  # Ray's reader would fail midway
    ([[("a.jpg", b"1"), ("a.image", b"2")]], "columns named like ours"),
    ([[("README", b"no sample")]], "hold no samples"),
])
def test_structural_problems_fail_fast(tmp_path, shards, message):
    for i, members in enumerate(shards):
        (tmp_path / f"{i}.tar").write_bytes(_tar(members))
    with pytest.raises(ValueError, match=message):
        discover(Storage.from_uri(str(tmp_path)))


def test_a_missing_shard_or_a_broken_tar_fails_fast(tmp_path):
    (tmp_path / "0.tar").write_bytes(_tar([("a.jpg", b"1")]))
    with pytest.raises(ValueError, match=r"1 of 2 shard\(s\)"):
        discover(Storage.from_uri(str(tmp_path / "{0..1}.tar")))
    (tmp_path / "1.tar").write_bytes(b"not a tar at all" * 40)
    with pytest.raises(ValueError, match="not a readable tar"):
        discover(Storage.from_uri(str(tmp_path / "{0..1}.tar")))


def test_rows_take_the_first_image_suffix_and_say_what_is_missing():
    raw = pa.table({"__key__": ["a", "b", "c"], "png": [None, b"P", None], "jpg": [b"J", b"J2", None],
                    "txt": [b"caption a", None, b"\xff bad utf-8"], "__url__": ["s.tar"] * 3})
    schema = pa.schema([("id", pa.string()), ("image", pa.binary()), ("mask", pa.binary()), ("txt", pa.string())])
    rows = to_rows(raw, Suffixes(prompt="txt"), schema).to_pylist()
    assert [r["image"] for r in rows] == [b"J", b"J2", None]  # jpg before png: the order of image_suffixes
    assert rows[0]["txt"] == rows[0]["prompt"] == "caption a" and rows[2]["txt"] == "\ufffd bad utf-8"
    assert rows[2]["image_missing"] == "the sample has no .jpg|jpeg|png|webp member"
    assert all(r["mask_missing"] == "the sample has no .mask.png member" for r in rows)
    assert "__url__" not in rows[0] and "__key__" not in rows[0]


def test_webdataset_on_s3_one_row_per_key_with_errors_and_metadata(ray_address, s3_endpoint, bucket):
    """Acceptance: img2dataset-layout shards on a real S3 endpoint, one corrupt sample, one without mask."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    keys = []
    for shard in range(2):
        data, shard_keys = img2dataset_shard(shard)
        fs.pipe_file(f"{bucket}/shards/{shard:05d}.tar", data)
        keys += shard_keys
    cfg = pipeline.JobConfig(model="tiny", input=f"s3://{bucket}/shards/{{00000..00001}}.tar", output=f"s3://{bucket}/out",
                             s3_endpoint=s3_endpoint, batch_size=2, sampler=FAST)
    summary = pipeline.run(cfg)
    assert (summary["inputs"], summary["ok"], summary["error"], summary["duplicates"]) == (6, 4, 2, 0)

    schema = carry.output_schema("restore", pa.schema([("json", pa.string()), ("txt", pa.string())]))
    table = output.read_output(Storage.from_uri(cfg.output, s3_endpoint), columns=schema.names, schema=schema)
    assert_exactly_once(table, keys)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows[CORRUPT_KEY]["error"].startswith("decode: cannot decode image")
    assert rows[MASKLESS_KEY]["error"] == "read: mask is missing (the sample has no .mask.png member)"
    for key, row in rows.items():
        assert json.loads(row["json"]) == metadata(key) and row["txt"] == f"photo {key}"
        if key not in (CORRUPT_KEY, MASKLESS_KEY):
            assert row["status"] == "ok"
            assert np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).shape == (64, 64, 3)
