"""A Ray job for tests/infra/test_cluster.py: sampler-like actors on chosen nodes stage a model
through pipeline.model_cache and load it with fcs.load_denoiser, then report where they ran.

    python staging_job.py MODEL_URI --endpoint URL --node NODE_ID --node NODE_ID [--per-node 2]

Prints one JSON line: a list of {node, path, cache, parameters} per actor.
"""

from __future__ import annotations

import argparse
import json
import os

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=0)
class Loader:
    """What the pipeline's sampler actor does in __init__: stage, then load once."""

    def __init__(self, model: str, endpoint: str) -> None:
        import fcs
        from pipeline.model_cache import stage_model

        self.path = stage_model(model, endpoint=endpoint)
        self.denoiser = fcs.load_denoiser(self.path, device="cpu", dtype="float32")

    def info(self) -> dict:
        return {"node": ray.get_runtime_context().get_node_id(), "path": self.path,
                "cache": os.environ.get("FCS_MODEL_CACHE"),
                "parameters": sum(p.numel() for p in self.denoiser.unet.parameters())}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--node", action="append", required=True)
    p.add_argument("--per-node", type=int, default=2)
    args = p.parse_args()
    ray.init()
    actors = [Loader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
              .remote(args.model, args.endpoint) for node in args.node for _ in range(args.per_node)]
    print(json.dumps(ray.get([a.info.remote() for a in actors])))


if __name__ == "__main__":
    main()
