"""Jobs on a local multi-node Ray cluster through the Ray Jobs API (what `ray job submit` and
KubeRay's RayJob use): the restoration job writes every id once, a rerun resumes, model staging
fetches once per node, and `fcs doctor` reports the cluster's nodes.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.model_cache import downloads

HERE = Path(__file__).parent


def _folder_dataset(root: Path, n: int, size: int = 64) -> list[str]:
    """images/<id>.png + masks/<id>.png (white square = regenerate)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ids = [f"img-{i:02d}" for i in range(n)]
    for i, name in enumerate(ids):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[8 + i: 40 + i, 16:48] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return ids


def _output_rows(out: Path) -> list[dict]:
    files = sorted(out.glob("part-*.parquet"))
    assert files, f"no part-*.parquet in {out}"
    return [row for f in files
            for row in pq.read_table(f, columns=["id", "status", "error", "node", "nfe"]).to_pylist()]


@pytest.mark.slow
def test_restore_job_through_jobs_api_writes_every_id_once_and_resumes(local_cluster, tmp_path: Path) -> None:
    ids = _folder_dataset(tmp_path / "input", n=6)
    out = tmp_path / "restored"
    command = (f"fcs run restore --input {tmp_path / 'input'} --output {out} --model tiny "
               "--actors 2 --batch-size 2 --preset paper --steps 2 --newton-steps 1")

    status, logs = local_cluster.run_job(command)
    assert status == "SUCCEEDED", logs[-4000:]
    rows = _output_rows(out)
    counts = collections.Counter(r["id"] for r in rows)
    assert sorted(counts) == ids and set(counts.values()) == {1}, counts
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    assert {r["node"] for r in rows} <= set(local_cluster.gpu_nodes), "sampler actors must run on the GPU nodes"
    assert all(r["nfe"] == 2 * (1 + 2 * 1) for r in rows)  # S(1+2K) UNet forwards, S=2, K=1

    # Resume = the same command again: nothing is redone, nothing duplicated.
    status, logs = local_cluster.run_job(command)
    assert status == "SUCCEEDED", logs[-4000:]
    again = collections.Counter(r["id"] for r in _output_rows(out))
    assert again == counts


@pytest.mark.slow
def test_model_from_s3_is_downloaded_once_per_node_not_per_actor(local_cluster, s3_endpoint: str,
                                                                 tmp_path: Path) -> None:
    import s3fs

    from fcs.tiny import build_tiny_sd

    model = build_tiny_sd(tmp_path / "sd-tiny")
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    fs.mkdir("models")
    fs.put(f"{model}/", "models/sd-tiny", recursive=True)
    assert fs.exists("models/sd-tiny/model_index.json")

    nodes = " ".join(f"--node {n}" for n in local_cluster.gpu_nodes)
    status, logs = local_cluster.run_job(
        f"{sys.executable} {HERE / 'staging_job.py'} s3://models/sd-tiny/ --endpoint {s3_endpoint} {nodes} --per-node 2"
    )
    assert status == "SUCCEEDED", logs[-4000:]
    actors = json.loads([line for line in logs.splitlines() if line.startswith("[")][-1])
    assert len(actors) == 4
    assert collections.Counter(a["node"] for a in actors) == {n: 2 for n in local_cluster.gpu_nodes}
    for node, cache in local_cluster.gpu_nodes.items():
        on_node = [a for a in actors if a["node"] == node]
        assert {a["cache"] for a in on_node} == {str(cache)}
        assert len({a["path"] for a in on_node}) == 1 and on_node[0]["path"].startswith(str(cache))
        log = downloads(cache)
        assert [(d["source"], d["what"]) for d in log] == [("s3://models/sd-tiny/", "download")], log
        assert log[0]["node"] == node and log[0]["files"] >= 10
    assert len({a["parameters"] for a in actors}) == 1
    assert not downloads(local_cluster.head_cache), "nothing is fetched on the head"


@pytest.mark.slow
def test_doctor_as_a_job_sees_every_node_and_flags_fake_gpus(local_cluster) -> None:
    # --no-memory: the memory section traces every full-size family (~30 CPU-seconds) and is the same on any
    # cluster; test_doctor checks it. Here only the nodes matter.
    status, logs = local_cluster.run_job("fcs doctor --require-gpu --no-memory")
    assert status == "FAILED", logs[-4000:]  # Ray advertises GPUs that torch on those nodes cannot see
    assert "3 node(s)" in logs and "GPU 2" in logs, logs[-4000:]
    for node in local_cluster.gpu_nodes:
        assert f"{node[:8]}): Ray advertises 1 GPU(s) but torch there sees 0" in logs, logs[-4000:]
    assert "no GPU" in logs
