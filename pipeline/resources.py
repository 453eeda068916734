"""What each sampler actor reserves on the Ray cluster, planned once on the driver before any work."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pipeline.config import JobConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What each sampler actor reserves, the torch device it is told to use, and its CPU threads."""

    gpus: float
    cpus: float
    device: str
    threads: int | None = None


def plan_resources(cfg: JobConfig, cluster: dict) -> Resources:
    """One GPU per actor when the cluster has GPUs, CPU otherwise; fail fast (ValueError) when the
    request cannot be met, because Ray would otherwise wait for the missing GPUs without end."""
    available = float(cluster.get("GPU", 0))
    gpus = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else (1.0 if available >= 1 else 0.0)
    if gpus > 0 and gpus * cfg.actors > available:
        raise ValueError(
            f"{cfg.actors} sampler actor(s) with {gpus:g} GPU each need {gpus * cfg.actors:g} GPU(s) but the Ray "
            f"cluster has {available:g}; lower actors, set gpus_per_actor (e.g. 0.5 to share a GPU, 0 for CPU), "
            "or add GPU nodes"
        )
    device = "cpu" if gpus == 0 and cfg.device == "auto" else cfg.device
    threads = None
    if gpus == 0:
        # Ray starts workers with one torch thread; on CPU share this machine's cores among the actors,
        # keeping one core for the read/decode/encode stages.
        threads = cfg.threads or max(1, int(cfg.cpus_per_actor) or ((os.cpu_count() or 1) - 1) // cfg.actors)
        log.warning("no GPU requested or found in the Ray cluster: %d sampler actor(s) run on CPU with %d torch "
                    "thread(s) each (slow for real models)", cfg.actors, threads)
    return Resources(gpus=float(gpus), cpus=float(cfg.cpus_per_actor), device=device, threads=threads)
