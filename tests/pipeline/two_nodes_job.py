"""Run by test_pipeline_two_nodes.py in its own process: a two-node Ray cluster (one fake GPU per
node) made with ``ray.cluster_utils.Cluster``, one restore job with two sampler actors; prints the
job summary as JSON on the last line. Usage: python two_nodes_job.py WORKDIR"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main(workdir: Path) -> None:
    import ray
    from pipeline_testdata import good_rows, write_shards
    from ray.cluster_utils import Cluster

    logging.basicConfig(level=logging.INFO)
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=2, num_gpus=1, object_store_memory=200 * 2**20,
                                                                 include_dashboard=False))
    cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=200 * 2**20)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        import pipeline
        from pipeline.config import JobConfig

        write_shards(workdir / "in", good_rows(16), per_shard=4)
        # ~1 s per batch, so batches queue up and both actors get some even though Ray Data prefers
        # the actor beside the data (the read tasks may all run on the head node).
        summary = pipeline.run(JobConfig(model="tiny", input=str(workdir / "in"), output=str(workdir / "out"), actors=2,
                                         batch_size=2, sampler={"steps": 6, "newton_steps": 2}))
        summary["nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        print(json.dumps(summary, default=str))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
