"""Acceptance 1: end to end over a real S3 server (moto, standalone on 127.0.0.1): shards (and the
model) uploaded with s3fs, the job reads them and writes Parquet back to the bucket; every id once."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import s3fs
from PIL import Image
from pipeline_testdata import FAST, assert_exactly_once, good_rows, read_rows

import pipeline
from pipeline.config import JobConfig


def test_s3_end_to_end(ray_address, s3_endpoint, bucket, monkeypatch, model_dirs):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.put(str(model_dirs["tiny"]) + "/", f"{bucket}/models/tiny/", recursive=True)  # staged once per node
    rows = good_rows(10)
    rows[3]["prompt"], rows[3]["seed"] = "a red door", 1234
    for k in range(0, 10, 4):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([{**r, "prompt": r.get("prompt"), "seed": r.get("seed")}
                                             for r in rows[k:k + 4]]), buf)
        fs.pipe_file(f"{bucket}/in/shard-{k // 4}.parquet", buf.getvalue())
    # The endpoint reaches the job only through the standard variable on the driver; the job hands
    # it to s3fs and pyarrow explicitly, in the driver and in every Ray worker.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    model = f"s3://{bucket}/models/tiny"
    cfg = JobConfig(input=f"s3://{bucket}/in/", output=f"s3://{bucket}/out", model=model, actors=2, batch_size=3,
                    sampler=FAST)
    summary = pipeline.run(cfg)

    assert (summary["inputs"], summary["ok"], summary["error"], summary["pending"],
            summary["duplicates"]) == (10, 10, 0, 0, 0)
    table = read_rows(f"s3://{bucket}/out", columns=None, endpoint=s3_endpoint)
    assert_exactly_once(table, [r["id"] for r in rows])
    for row in table.to_pylist():
        assert row["status"] == "ok" and row["error"] is None
        assert np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))).shape == (64, 64, 3)
        for name in ("sample_s", "nfe", "residual_init", "peak_mem_mb", "batch_size"):
            assert row[name] > 0, name
        assert row["worker"] and row["node"] and row["device"] and row["model"] == model and row["task"] == "restore"
        assert row["finished_at"] >= row["started_at"]
    assert {r["id"]: r["seed"] for r in table.to_pylist()}["item-003"] == 1234
    assert fs.exists(f"{bucket}/out/_summary.json")
    assert len(fs.glob(f"{bucket}/out/part-*.parquet")) == 1  # 10 rows fit one file of rows_per_file
