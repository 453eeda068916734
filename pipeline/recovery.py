"""Finishing a job when worker nodes are lost (a preempted spot VM, a drained or crashed node).

Ray Data copes with a lost node on its own when it can: the lost sampler actor's batch is retried
(``embed.MAX_BATCH_RETRIES``), lost blocks are rebuilt from lineage. When the batch's retries run out
before the cluster has declared the node dead (GCS health checks: 10 s or more by default), the
dataset fails with a Ray system error instead. The driver then starts over on what is pending:

1. it checks that a node alive when the attempt started is gone (waiting up to ``NODE_LOSS_WAIT_S``
   for the GCS to notice); any other failure fails the job as before;
2. frees the failed dataset's actors (their GPUs stay reserved until the driver drops them);
3. hands its lease to a new attempt id: write tasks of the failed attempt still in flight commit
   nothing, so an id is never committed twice (:func:`pipeline.output.hand_over`);
4. waits up to ``actor_start_timeout_s`` for GPUs for at least one sampler actor (a replacement node,
   or what survived) and runs the graph again over the ids not yet committed, with as many actors
   as the cluster now holds (at most ``actors``).

At most ``MAX_RESTARTS`` times per run; the summary's ``recovery`` says what happened. A node the
autoscaler removed during the run counts as lost too (the cluster does not say why a node left).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)

MAX_RESTARTS = 8          # graph restarts after node losses, per run
NODE_LOSS_WAIT_S = 60.0   # how long a failure waits for the GCS to declare a node dead
POLL_S = 1.0


def nodes(alive: bool = True) -> set[str]:
    """The ids of the cluster's live nodes, or of those it has declared dead (it remembers them)."""
    import ray

    return {node["NodeID"] for node in ray.nodes() if node["Alive"] == alive}


def is_system_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is Ray's, not the job's: a dead or
    unreachable actor, worker or node, or a lost object. A task that raised its own error (a failed
    commit, a bad read) is the job's, even though Ray Data marks every error outside user code as
    its own (``raise ... from SystemException()``)."""
    from ray import exceptions as rex

    system = (rex.RayActorError, rex.NodeDiedError, rex.ObjectLostError, rex.WorkerCrashedError, rex.RaySystemError)
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, system):
            return True
        if isinstance(exc, rex.RayTaskError):
            return False
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def lost_nodes(before: set[str], exc: BaseException, wait_s: float = NODE_LOSS_WAIT_S) -> set[str]:
    """The nodes of ``before`` that are gone, if ``exc`` is a Ray system error (else none), waiting up
    to ``wait_s`` for the cluster to declare one dead."""
    if not is_system_error(exc):
        return set()
    deadline = time.monotonic() + wait_s
    try:
        while not (lost := before - nodes()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    except Exception as asking:  # noqa: BLE001 - the head itself is gone: the job's own error is the one to raise
        log.warning("could not ask the cluster which nodes are alive (%s: %s)", type(asking).__name__, asking)
        return set()
    return lost


def actors_now(wanted: int, gpus_per_actor: float, wait_s: float) -> int:
    """How many sampler actors the cluster's GPUs hold now (at most ``wanted``), waiting up to
    ``wait_s`` for room for one; 0 if none came. CPU actors (``gpus_per_actor`` 0): ``wanted``."""
    import ray

    if gpus_per_actor <= 0:
        return wanted
    deadline = time.monotonic() + wait_s
    while True:
        fits = min(wanted, int(ray.cluster_resources().get("GPU", 0) // gpus_per_actor))
        if fits or time.monotonic() >= deadline:
            return fits
        time.sleep(POLL_S)


def free_failed_attempt() -> None:
    """Drop what the failed dataset still references, so its actors exit and give back their GPUs."""
    gc.collect()


@dataclass
class Recovery:
    """What the summary reports: the nodes declared dead during the run (also those Ray Data coped
    with on its own, and replacement nodes lost in turn), graph restarts, and the seconds from each
    failure to the next attempt's start."""

    lost_nodes: list[str] = field(default_factory=list)
    restarts: int = 0
    recover_s: list[float] = field(default_factory=list)

    def note_lost(self, nodes: set[str]) -> None:
        self.lost_nodes += sorted(nodes - set(self.lost_nodes))

    def to_dict(self) -> dict:
        return asdict(self) | {"nodes_lost": len(self.lost_nodes)}
