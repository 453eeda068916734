"""Fixtures for the pipeline tests: one local Ray cluster per session (4 logical CPUs, 2 fake GPUs),
a moto S3 server on 127.0.0.1. Test data helpers live in ``pipeline_testdata``.

Ray workers inherit the environment at ``ray.init``, so fake AWS credentials and $FCS_CACHE are set
before the cluster starts; the S3 endpoint itself is passed explicitly by the job (never by env).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
