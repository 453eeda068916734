"""Ray token authentication on a real cluster (``ray start --head`` with RAY_AUTH_MODE=token, the
``token_cluster`` fixture): a job submitted with the token runs; a submission, an HTTP call to the Jobs
API or a ``ray.init`` without it is refused, and ``fcs doctor`` says why. Every client is a
separate process with its own environment, so nothing here touches this pytest process's Ray state."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from infra_helpers import REPO
from venv_tools import venv_tool

# A refused ray.init retries for ~20 s by default (one try a second); two tries show the refusal.
SHORT_CONNECT = {"RAY_gcs_server_port_wait_time_s": "2"}


def _submit(cluster, token: str | None, timeout_s: float = 90.0) -> subprocess.CompletedProcess:
    """``ray job submit`` of a one-line job, as infra/submit_job.sh runs it, retried while the head's job
    agent is still registering."""
    command = [venv_tool("ray"), "job", "submit", "--address", cluster.dashboard, "--",
               "python", "-c", "print('job', 6 * 7)"]
    deadline = time.time() + timeout_s
    while True:
        done = subprocess.run(command, env=cluster.client_env(token), capture_output=True, text=True, timeout=timeout_s)
        if "No available agent" not in done.stdout + done.stderr or time.time() > deadline:
            return done
        time.sleep(1.0)


def _doctor_connect(cluster, token: str | None) -> tuple[dict, str]:
    """``fcs doctor``'s connection step (a plain ``ray.init(address=...)``) in a process with or without
    the token: its report and problems as JSON, and the process's stderr."""
    code = ("import json; from jobs.doctor import auth_problems, connect; "
            f"r = connect({cluster.gcs!r}); print(json.dumps(dict(r, problems=auth_problems(r))))")
    done = subprocess.run([sys.executable, "-c", code], env=cluster.client_env(token) | SHORT_CONNECT, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_a_job_runs_with_the_token_and_is_refused_without_it(token_cluster) -> None:
    done = _submit(token_cluster, token_cluster.token)
    assert done.returncode == 0 and "job 42" in done.stdout and "succeeded" in done.stdout, done.stdout + done.stderr

    refused = _submit(token_cluster, None)
    assert refused.returncode != 0 and "Missing authentication token" in refused.stderr, refused.stderr[-2000:]
    wrong = _submit(token_cluster, "0" * 64)
    assert wrong.returncode != 0 and "Invalid authentication token" in wrong.stderr, wrong.stderr[-2000:]
    assert "job 42" not in refused.stdout + wrong.stdout

    # The Jobs API itself, not only Ray's client, refuses a request without a token.
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(f"{token_cluster.dashboard}/api/jobs/", timeout=10)
    assert http.value.code == 401


def test_ray_init_without_the_token_is_refused_and_doctor_says_why(token_cluster) -> None:
    report, stderr = _doctor_connect(token_cluster, None)
    assert not report["connected"] and "InvalidAuthToken" in stderr, stderr[-2000:]
    assert report["auth"] == {"cluster": "token", "client": {"mode": "disabled", "token": None}}
    assert len(report["problems"]) == 1 and "requires a token and refused this process" in report["problems"][0]

    report, stderr = _doctor_connect(token_cluster, token_cluster.token)
    assert report["connected"], stderr[-2000:]
    assert report["auth"] == {"cluster": "token", "client": {"mode": "token", "token": "$RAY_AUTH_TOKEN"}}
    assert report["problems"] == []
    assert token_cluster.token not in json.dumps(report), "the report must never hold the token"
