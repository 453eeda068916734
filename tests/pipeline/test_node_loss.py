"""A worker node lost mid-job, on a real cluster: a head and two worker nodes with one fake GPU each,
each started by ``ray start`` in its own process group (benchmarks/ray_nodes.py), token auth on.

A restore job with two sampler actors (the tiny model, ~1 s per batch) runs from a driver process of
its own. Once both GPU nodes have committed rows (one actor per node, as placed), the whole process
tree of one worker node gets SIGKILL (a preempted spot VM) or SIGTERM (a drained node). The job must
finish on the surviving node, with every id exactly once and the lost node in the summary. This test
also stands for "one sampler actor per GPU node, each reporting its own worker, node and device".

The GCS health checks are set so that after a SIGKILL, Ray Data's own retries of the lost actor's
batch run out before the node is declared dead (as on a loaded cluster): the job fails over to
:mod:`pipeline.recovery`, which starts the graph over. A drained raylet says goodbye, so the cluster
knows at once and Ray Data usually copes alone. The fault benchmark (benchmarks/faults.py) kills
more nodes at random points, with Ray's defaults.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_testdata import assert_exactly_once, committed, good_rows, read_rows, wait_for, write_shards

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from ray_nodes import LocalNodes  # noqa: E402 - benchmarks/ is not a package

HEALTH = (10000, 2)  # the GCS declares a lost node dead after ~20 s: Ray Data's retries usually give up first
ITEMS = 24
DRIVER = """
import json, sys
import ray
import pipeline
from pipeline.config import JobConfig
ray.init(log_to_driver=False)
summary = pipeline.run(JobConfig(model="tiny", input=sys.argv[1], output=sys.argv[2], actors=2, batch_size=2,
                                 rows_per_file=2, sampler={"steps": 6, "newton_steps": 2}))
print("RESULT", json.dumps(summary, default=str))
"""


def nodes_with_commits(out: Path) -> dict[str, set[str]]:
    """node id -> the sampler actors (workers) whose rows are committed so far."""
    found: dict[str, set[str]] = {}
    if committed(out):
        for row in read_rows(str(out), columns=["node", "worker"]).to_pylist():
            found.setdefault(row["node"], set()).add(row["worker"])
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["lost", "drained"])
def test_a_lost_worker_node_does_not_fail_the_job(sig, tmp_path, fcs_cache):
    rows = good_rows(ITEMS)
    write_shards(tmp_path / "in", rows, per_shard=4)
    out = tmp_path / "out"
    with LocalNodes(tmp_path / "nodes", health=HEALTH, environ={"FCS_CACHE": str(fcs_cache)}) as nodes:
        nodes.start_head(num_cpus=2)
        workers = [nodes.add_worker() for _ in range(2)]
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "in"), str(out)],
                                  env=nodes.env | {"RAY_ADDRESS": nodes.address}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            both = wait_for(lambda: len(nodes_with_commits(out)) == 2 or driver.poll() is not None, 240, every=0.2)
            assert both, "no commit from either GPU node"
            before = nodes_with_commits(out)
            assert len(before) == 2, f"the job ended before both GPU nodes committed rows: {before}"
            victim = next(n for n in workers if any(nodes.node_of_ray_id(node) is n for node in before))
            killed_node = next(node for node in before if nodes.node_of_ray_id(node) is victim)
            nodes.kill(victim, sig)
            killed_at = time.time()
            log, _ = driver.communicate(timeout=300)
        finally:
            driver.kill()
    assert driver.returncode == 0, log[-6000:]
    summary = json.loads(next(line for line in reversed(log.splitlines()) if line.startswith("RESULT "))[7:])

    assert all(len(actors) == 1 for actors in before.values()), f"one sampler actor per GPU node: {before}"
    assert (summary["ok"], summary["pending"], summary["duplicates"], summary["gpus_per_actor"]) == (ITEMS, 0, 0, 1.0)
    table = read_rows(str(out))
    assert_exactly_once(table, [r["id"] for r in rows])
    assert set(table.column("device").to_pylist()) == {"cpu"}  # fake GPUs: Ray reserved one, torch has no CUDA
    assert summary["recovery"]["lost_nodes"] == [killed_node]
    late = [r for r in table.to_pylist() if r["started_at"].timestamp() > killed_at]
    assert late and {r["node"] for r in late} == set(before) - {killed_node}, "rows after the kill ran elsewhere"
    # Ray Data either coped (the batch retried once the node was declared dead) or failed and the
    # driver started over once (pipeline.recovery); with these health checks it is nearly always the latter
    restarts = summary["recovery"]["restarts"]
    assert restarts in (0, 1) and len(summary["recovery"]["recover_s"]) == restarts, summary["recovery"]
