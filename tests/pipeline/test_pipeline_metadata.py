"""Metadata carried through: which input columns reach the output, and that they survive a rerun."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from input_kinds import img2dataset_shard, metadata
from pipeline_testdata import FAST, assert_exactly_once, good_rows, hole, photo, png, write_shards

import pipeline
from pipeline import carry, output
from pipeline.storage import Storage

INPUT = pa.schema([("id", pa.string()), ("image", pa.binary()), ("mask", pa.binary()), ("seed", pa.int64()),
                   ("prompt", pa.string()), ("caption", pa.string()), ("width", pa.int32()),
                   ("image_path", pa.string())])


def test_carried_columns_follow_the_task():
    assert carry.carried_schema(INPUT, "restore").names == ["prompt", "caption", "width"]
    assert carry.carried_schema(INPUT, "superres").names == ["mask", "prompt", "caption", "width"]  # unused there
    assert carry.carried_schema(INPUT, "restore", ["width", "caption"]).names == ["width", "caption"]
    assert carry.carried_schema(INPUT, "restore", []).names == []
    assert carry.carried_schema(None, "restore").names == []  # a folder input has no metadata
    out = carry.output_schema("layers", carry.carried_schema(INPUT, "layers", ["width"]))
    assert out.names[-4:] == ["foreground", "background", "alpha", "width"] and out.field("width").type == pa.int32()


@pytest.mark.parametrize("columns, keep, message", [
    (["status"], None, "'status' have the names of restore output columns"),
    (["alpha"], None, "'alpha' have the names of layers output columns"),
    ([], ["mask"], "'mask' consumed by"),
    ([], ["licence"], "'licence' not among the input columns"),
])
def test_clashes_and_bad_keep_columns_fail_fast(columns, keep, message):
    schema = INPUT
    for name in columns:
        schema = schema.append(pa.field(name, pa.string()))
    task = "layers" if "alpha" in columns else "restore"
    with pytest.raises(ValueError, match=message):
        carry.carried_schema(schema, task, keep)
    if keep is None:  # listing the other columns is the way out
        assert carry.carried_schema(schema, task, ["caption"]).names == ["caption"]


def _parquet(tmp_path) -> tuple[str, list[str], dict]:
    rows = [{**r, "caption": f"cap {r['id']}", "licence": "CC0"} for r in good_rows(6)]
    write_shards(tmp_path / "in", rows[:3], per_shard=3)
    # a later shard without the licence column: its rows carry a null licence
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "licence"} for r in rows[3:]]),
                   tmp_path / "in" / "shard-9999.parquet")
    want = {r["id"]: {"caption": r["caption"], "licence": r.get("licence") if i < 3 else None}
            for i, r in enumerate(rows)}
    return str(tmp_path / "in"), list(want), want


def _webdataset(tmp_path) -> tuple[str, list[str], dict]:
    (tmp_path / "in").mkdir()
    keys = []
    for shard in range(2):
        data, shard_keys = img2dataset_shard(shard, corrupt="", maskless="")
        (tmp_path / "in" / f"{shard:05d}.tar").write_bytes(data)
        keys += shard_keys
    return str(tmp_path / "in" / "{00000..00001}.tar"), keys, {
        k: {"json": json.dumps(metadata(k)), "txt": f"photo {k}"} for k in keys}


def _manifest(tmp_path) -> tuple[str, list[str], dict]:
    (tmp_path / "in" / "objects").mkdir(parents=True)
    ids = [f"m{i}" for i in range(6)]
    for i, item in enumerate(ids):
        (tmp_path / "in" / "objects" / f"{item}.png").write_bytes(png(photo(seed=i)))
    (tmp_path / "in" / "objects" / "mask.png").write_bytes(png(hole()))
    lines = ["id,image_uri,mask_uri,url"] + [f"{i},objects/{i}.png,objects/mask.png,https://x/{i}" for i in ids]
    (tmp_path / "in" / "list.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "in" / "list.csv"), ids, {
        i: {"image_uri": f"objects/{i}.png", "mask_uri": "objects/mask.png", "url": f"https://x/{i}"} for i in ids}


# WebDataset (brace pattern, json and txt carried) through a real crash: test_pipeline_resume's driver-kill
# test checks the same, which saves a run here.
@pytest.mark.parametrize("make", [_parquet, _manifest], ids=["parquet", "manifest"])
def test_metadata_of_every_input_kind_survives_an_interrupted_run(ray_address, tmp_path, make):
    source, ids, want = make(tmp_path)
    out = tmp_path / "out"
    cfg = pipeline.JobConfig(model="tiny", input=source, output=str(out), batch_size=2, sampler=FAST, limit=3)
    first = pipeline.run(cfg)  # stops after 3 items: the committed state a crash midway leaves
    assert first["this_run"]["rows"] == 3 and first["pending"] == len(ids) - 3
    (out / "_fcs" / "tmp").mkdir(parents=True, exist_ok=True)
    (out / "_fcs" / "tmp" / "partial.tmp").write_bytes(b"PAR1 half a file")  # what a killed write leaves
    second = pipeline.run(pipeline.JobConfig(**{**cfg.to_dict(), "limit": None}))
    assert (second["rows"], second["pending"], second["duplicates"], second["this_run"]["rows"]) == (
        len(ids), 0, 0, len(ids) - 3)

    table = pads.dataset(str(out), format="parquet").to_table()  # as a user reads it: every file, one schema
    assert_exactly_once(table, ids)
    columns = list(next(iter(want.values())))
    assert table.schema.names == pipeline.TASKS["restore"].schema.names + columns
    for row in table.to_pylist():
        assert row["status"] == "ok", row["error"]
        assert {c: row[c] for c in columns} == want[row["id"]]
    done = output.read_output(Storage.from_uri(str(out)), columns=["id", "status"])  # resume's own read
    assert done.num_rows == len(ids)


def test_keep_columns_through_the_cli(ray_address, tmp_path):
    from jobs.cli import main

    source, ids, _ = _webdataset(tmp_path)
    code = main(["run", "restore", "--input", source, "--output", str(tmp_path / "out"), "--model", "tiny",
                 "--keep-columns", "txt",
                 "--prompt-suffix", "txt", "--steps", "2", "--newton-steps", "1", "--limit", "2"])
    assert code == 0
    table = pads.dataset(str(tmp_path / "out"), format="parquet").to_table()
    assert table.schema.names[-1] == "txt" and "json" not in table.schema.names
    assert sorted(table.column("txt").to_pylist()) == [f"photo {k}" for k in ids[:2]]
    config = json.loads((tmp_path / "out" / "_summary.json").read_text())["config"]
    assert config["input_options"]["prompt_suffix"] == "txt"

