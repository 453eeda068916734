"""Fixtures for the pipeline tests: one local Ray cluster per session (4 logical CPUs, 2 fake GPUs),
a moto S3 server and a SeaweedFS one on 127.0.0.1. Test data helpers live in ``pipeline_testdata``.

Ray workers inherit the environment at ``ray.init``, so fake AWS credentials and $FCS_CACHE are set
before the cluster starts; the S3 endpoint itself is passed explicitly by the job (never by env).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from venv_tools import venv_tool

for _key, _value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                     ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def ray_address(fcs_cache: Path):
    """A shared local Ray cluster: 4 logical CPUs, 2 fake GPUs (sampler actors reserve num_cpus=0).
    ``address="local"`` starts our own even when another cluster runs on this machine."""
    import ray
    from ray.data import DataContext

    previous = os.environ.get("FCS_CACHE")
    os.environ["FCS_CACHE"] = str(fcs_cache)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, object_store_memory=400 * 2**20,
                 log_to_driver=False)
    DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
    if previous is None:
        os.environ.pop("FCS_CACHE", None)
    else:
        os.environ["FCS_CACHE"] = previous


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 (reachable from Ray worker processes); yields its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, request) -> str:
    """A fresh bucket name on the moto server."""
    import re

    import s3fs

    name = "fcs-" + re.sub(r"[^a-z0-9.-]+", "-", request.node.name.lower())[:40].strip("-")  # parametrised ids too
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    if not fs.exists(name):
        fs.mkdir(name)
    return name


PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc", "webdav.port", "admin.port", "admin.port.grpc", "s3.port.iceberg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    """``weed mini`` (master, volume, filer, S3 gateway in one process) on free ports, with a bucket
    ``fcs``; yields the S3 URL. One per session: tests use prefixes of their own."""
    import s3fs

    root = tmp_path_factory.mktemp("seaweed")
    ports = {name: _free_port() for name in PORTS}
    args = [venv_tool("weed"), "mini", f"-dir={root / 'weed'}", "-ip=127.0.0.1", "-admin.ui=false",
            "-master.telemetry=false"]
    (root / "weed").mkdir()
    with open(root / "weed.log", "wb") as log:
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
                    pytest.fail("weed mini did not start:\n" + (root / "weed.log").read_text()[-2000:])
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
