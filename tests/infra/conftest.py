"""Fixtures for the cluster and container tests: pyproject.toml, a local multi-node Ray cluster with
the Jobs API (dashboard) up, and a moto S3 server. Plain helpers live in ``infra_helpers``.

The cluster is ``ray.cluster_utils.Cluster``: a CPU head that runs the job drivers and two worker
nodes with one "GPU" each. Every node gets its own ``$FCS_MODEL_CACHE`` through the raylet's
environment, as a real node has its own disk. Nothing here connects this pytest process to the
cluster (other test folders may hold their own ``ray.init``): jobs go through the Jobs API.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra_helpers import REPO

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
for _key, _value in FAKE_AWS.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# -- S3 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1, reachable from Ray worker processes; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


# -- a local multi-node Ray cluster with the Jobs API -----------------------------------------
@dataclass
class LocalCluster:
    """``dashboard``: the Jobs API URL; ``gpu_nodes``: node id -> that node's model cache folder."""

    dashboard: str
    head_cache: Path
    gpu_nodes: dict[str, Path]

    def run_job(self, entrypoint: str, timeout_s: float = 240.0, env: dict | None = None) -> tuple[str, str]:
        """Submit ``entrypoint`` through the Ray Jobs API, wait for it, return (status, logs)."""
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(self.dashboard)
        runtime_env = {"env_vars": env} if env else None
        deadline = time.time() + timeout_s
        while True:
            try:
                job = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
                break
            except RuntimeError as exc:  # the head's job agent registers a while after the dashboard
                if "No available agent" not in str(exc) or time.time() > deadline:
                    raise
                time.sleep(1.0)
        while not client.get_job_status(job).is_terminal():
            if time.time() > deadline:
                client.stop_job(job)
                pytest.fail(f"job {job} ({entrypoint}) did not finish in {timeout_s:.0f}s:\n"
                            f"{client.get_job_logs(job)[-4000:]}")
            time.sleep(0.5)
        return str(client.get_job_status(job).value), client.get_job_logs(job)


def _dashboard_missing() -> str | None:
    """The Jobs API needs ray[default] (the dashboard's aiohttp_cors, opencensus, prometheus_client, grpc)."""
    missing = []
    for module in ("aiohttp", "aiohttp_cors", "opencensus", "prometheus_client", "grpc"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return ", ".join(missing) or None


@contextlib.contextmanager
def _private_ray_tmpdir(path: str):
    """Ray writes the address of a ``Cluster`` to ``$RAY_TMPDIR/ray/ray_current_cluster``, where any
    ``ray.init()`` on this machine (other tests, other pytest processes) would find and join it.
    Starting and stopping the cluster with its own RAY_TMPDIR keeps it private."""
    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory, fcs_cache: Path):
    """A head (2 CPUs, runs the job drivers and CPU stages) and two nodes with 1 CPU and 1 "GPU" each."""
    missing = _dashboard_missing()
    if missing:
        pytest.fail(f"the Ray Jobs API needs the dashboard: pip install 'ray[default]' (missing: {missing})")
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("cluster")
    ray_tmp = tempfile.mkdtemp(prefix="fcsray-", dir="/tmp")  # short: Ray's socket paths live under it
    # Nodes start from this process's environment; these make each one look like its own machine.
    base = dict(FAKE_AWS, FCS_CACHE=str(fcs_cache),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                RAY_DATA_DISABLE_PROGRESS_BARS="1")
    head_cache = root / "head-cache"
    gpu_nodes = {}
    with _private_ray_tmpdir(ray_tmp):
        cluster = Cluster(
            initialize_head=True,
            # Free ports only: other Ray instances on this machine hold the defaults (agent: 52365).
            head_node_args=dict(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=0,
                                dashboard_agent_listen_port=None, object_store_memory=200 * 2**20,
                                env_vars=dict(base, FCS_MODEL_CACHE=str(head_cache))),
        )
        for name in ("gpu-a", "gpu-b"):
            cache = root / f"{name}-cache"
            node = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=150 * 2**20,
                                    env_vars=dict(base, FCS_MODEL_CACHE=str(cache)))
            gpu_nodes[node.node_id] = cache
        cluster.wait_for_nodes()
    try:
        yield LocalCluster(f"http://{cluster.head_node.address_info['webui_url']}", head_cache, gpu_nodes)
    finally:
        with _private_ray_tmpdir(ray_tmp):
            cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
