"""Fixtures for the cluster and container tests: pyproject.toml, a local multi-node Ray cluster with
the Jobs API (dashboard) up, a one-node cluster started by ``ray start`` with token authentication,
and a moto S3 server. Plain helpers live in ``infra_helpers``.

The cluster is ``ray.cluster_utils.Cluster``: a CPU head that runs the job drivers and two worker
nodes with one "GPU" each. Every node gets its own ``$FCS_MODEL_CACHE`` through the raylet's
environment, as a real node has its own disk. Nothing here connects this pytest process to the
cluster (other test folders may hold their own ``ray.init``): jobs go through the Jobs API.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra_helpers import REPO
from venv_tools import venv_tool

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


# -- a `ray start` head with token authentication (RAY_AUTH_MODE=token, as every infra/ cluster) --
@dataclass
class TokenCluster:
    """``gcs``: the address ``ray.init`` takes; ``dashboard``: the Jobs API URL; ``token``: the cluster's
    token; ``home``: an empty HOME, so that no ``~/.ray/auth_token`` of this machine stands in for it."""

    gcs: str
    dashboard: str
    token: str
    home: Path

    def client_env(self, token: str | None) -> dict[str, str]:
        """A client process's environment: RAY_AUTH_MODE=token with ``token`` (as infra/submit_job.sh
        sets them), or with ``token=None`` no Ray auth setting at all; never this machine's own token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
        env.update(HOME=str(self.home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
        return env | ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token is not None else {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(pgid: int, grace_s: float = 3.0) -> None:
    """SIGTERM the process group ``ray start`` left behind (its own session), SIGKILL what outlives
    ``grace_s``. Never `ray stop`: that stops every Ray on this machine, other people's too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.time() + grace_s
        while time.time() < deadline:
            os.killpg(pgid, 0)  # raises ProcessLookupError once the group is gone
            time.sleep(0.2)
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory: pytest.TempPathFactory):
    """One head (1 CPU, dashboard on a free port) started by ``ray start --head`` with RAY_AUTH_MODE=token
    and a token generated here in $RAY_AUTH_TOKEN, in its own session, $HOME and Ray temp dir."""
    missing = _dashboard_missing()
    if missing:
        pytest.fail(f"the Ray Jobs API needs the dashboard: pip install 'ray[default]' (missing: {missing})")
    home = tmp_path_factory.mktemp("token-home")
    ray_tmp = tempfile.mkdtemp(prefix="fcsauth-", dir="/tmp")  # short: Ray's socket paths live under it
    cluster = TokenCluster(f"127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}", secrets.token_hex(32),
                           home)
    port = cluster.gcs.rsplit(":", 1)[1]
    dashboard_port = cluster.dashboard.rsplit(":", 1)[1]
    ports = {flag: str(_free_port()) for flag in ("--ray-client-server-port", "--dashboard-agent-listen-port",
                                                   "--metrics-export-port", "--runtime-env-agent-port")}
    command = [venv_tool("ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
               "--num-cpus=1", "--object-store-memory=100000000", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", f"--temp-dir={ray_tmp}",
               "--disable-usage-stats", *(f"{flag}={value}" for flag, value in ports.items())]
    env = cluster.client_env(cluster.token) | {"RAY_TMPDIR": ray_tmp, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    started = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = started.communicate(timeout=120)
        if started.returncode:
            pytest.fail(f"`ray start --head` with RAY_AUTH_MODE=token failed ({started.returncode}):\n{out[-4000:]}")
        yield cluster
    finally:
        started.kill()  # no-op once it has exited; its daemons live on in its process group
        _stop_group(started.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
