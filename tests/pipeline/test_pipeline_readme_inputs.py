"""The input-kind commands of docs/inputs.md run as written, against a moto S3 bucket holding one dataset
per kind (``bucket`` is replaced by the test's bucket; the endpoint and a fast sampler are appended)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from docs_pages import DOCS, blocks, fcs_commands
from input_kinds import img2dataset_shard
from pipeline_testdata import good_rows, hole, photo, png

from pipeline import carry, output
from pipeline.storage import Storage

COMMANDS = fcs_commands(blocks(DOCS / "inputs.md", "bash")[0])  # the page's first block: one command per kind
EXPECTED = {  # output prefix -> (ids, carried columns)
    "restored-parquet": (["item-000", "item-001"], ["caption"]),
    "restored-folder": (["a", "b"], []),
    "restored-shards": (["000000000", "000000001", "000000002", "000010000", "000010001", "000010002"],
                        ["json", "txt"]),
    "restored-manifest": (["m0", "m1"], ["caption"]),
}


def _upload(fs, bucket: str) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{**r, "caption": f"cap {r['id']}"} for r in good_rows(2)]), buf)
    fs.pipe({f"{bucket}/parquet/shard-0.parquet": buf.getvalue(),
             f"{bucket}/folder/images/a.png": png(photo()), f"{bucket}/folder/masks/a.png": png(hole()),
             f"{bucket}/folder/images/b.png": png(photo(seed=1)), f"{bucket}/folder/masks/b.png": png(hole()),
             f"{bucket}/objects/m0.png": png(photo()), f"{bucket}/objects/m1.png": png(photo(seed=1)),
             f"{bucket}/objects/mask.png": png(hole()),
             f"{bucket}/manifest.csv": b"id,image_uri,mask_uri,caption,licence\n"
             + "".join(f"m{i},s3://{bucket}/objects/m{i}.png,s3://{bucket}/objects/mask.png,cap m{i},CC0\n"
                       for i in range(2)).encode()})
    for shard in range(2):
        fs.pipe_file(f"{bucket}/shards/{shard:05d}.tar", img2dataset_shard(shard)[0])


def test_docs_have_one_command_per_input_kind():
    outputs = [argv[argv.index("--output") + 1] for argv in COMMANDS]
    assert len(COMMANDS) == 4 and all(any(name in o for o in outputs) for name in EXPECTED)


def test_docs_input_commands_run(ray_address, s3_endpoint, bucket):
    import s3fs

    from jobs.cli import main

    _upload(s3fs.S3FileSystem(endpoint_url=s3_endpoint), bucket)
    for command in COMMANDS:
        args = [a.replace("s3://bucket/", f"s3://{bucket}/") for a in command[1:]]
        assert main(args + ["--s3-endpoint", s3_endpoint, "--steps", "2", "--newton-steps", "1"]) == 0, command
        name = args[args.index("--output") + 1].rstrip("/").rsplit("/", 1)[1]
        ids, columns = EXPECTED[name]
        schema = carry.output_schema("restore", pa.schema([(c, pa.string()) for c in columns]))
        table = output.read_output(Storage.from_uri(f"s3://{bucket}/{name}", s3_endpoint), columns=schema.names,
                                   schema=schema)
        rows = {r["id"]: r for r in table.to_pylist()}
        assert sorted(rows) == ids, command
        assert all(r["status"] == "ok" or r["id"] in ("000000001", "000010002") for r in rows.values()), command
        assert all(r[c] is not None for r in rows.values() for c in columns), command
