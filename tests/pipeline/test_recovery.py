"""The parts of recovering from a lost node that need no cluster: which failures count as Ray's,
handing the output to the driver's next attempt (the failed attempt's late commits are refused), and
the driver's restart loop with the graph and the cluster stood in for. The whole recovery on a real
cluster: test_node_loss.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pyarrow as pa
import pytest
from pipeline_testdata import wait_for
from ray import exceptions as rex
from ray.data.exceptions import SystemException

from pipeline import graph, leases, output, recovery
from pipeline.config import JobConfig
from pipeline.resources import Resources
from pipeline.schema import OUTPUT_SCHEMA
from pipeline.storage import Storage


def rows(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "status": ["ok"] * len(ids)}).cast(
        pa.schema([OUTPUT_SCHEMA.field("id"), OUTPUT_SCHEMA.field("status")]))


def raised_from(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError("dataset failed") from cause
    except RuntimeError as exc:
        return exc


def task_error(cause: BaseException) -> BaseException:
    """What Ray raises for a task that failed with ``cause``, as Ray Data re-raises it."""
    error = rex.RayTaskError("write", "traceback", cause).as_instanceof_cause()
    error.__cause__ = SystemException()  # Ray Data marks every error outside user code so
    return error


@pytest.mark.parametrize("error", [
    rex.ActorUnavailableError("actor unavailable", None), rex.ActorDiedError(), rex.NodeDiedError("node died"),
    rex.RaySystemError("lost"), raised_from(rex.ActorUnavailableError("actor unavailable", None)),
    task_error(rex.ObjectLostError("ab" * 14, None, "read")),
])
def test_ray_failures_count_as_system_errors(error):
    assert recovery.is_system_error(error)


@pytest.mark.parametrize("error", [
    ValueError("bad config"), raised_from(KeyError("column")), task_error(RuntimeError("lease lost")),
    raised_from(SystemException()),
])
def test_the_jobs_own_errors_do_not_wait_for_a_lost_node(error, monkeypatch):
    asked = []
    monkeypatch.setattr(recovery, "nodes", lambda alive=True: asked.append(alive) or set())
    assert not recovery.is_system_error(error)
    assert recovery.lost_nodes({"some-node"}, error) == set()
    assert asked == []  # the cluster was not even asked


def test_a_handed_over_output_refuses_the_failed_attempts_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(leases, "COMMIT_WINDOW_S", 1.0)
    store = Storage.from_uri(str(tmp_path / "out"))
    with leases.held(store, "run-a", lease_s=30, every_s=0.05) as holding:
        output.commit(store, "run-a", rows(["id-0", "id-1"]))
        started = time.monotonic()
        files = output.hand_over(holding, "run-a.1")
        assert time.monotonic() - started >= 0.9  # waited out the commit window of run-a's live lease
        assert len(files) == 1 and (leases.current(store).run_id, leases.current(store).epoch) == ("run-a.1", 2)
        with pytest.raises(RuntimeError, match="now owned by run run-a.1"):
            output.commit(store, "run-a", rows(["id-2"]))  # a write task of the failed attempt, landing late
        output.commit(store, "run-a.1", rows(["id-2", "id-3"]))
        with pytest.raises(leases.LeaseHeld, match="run run-a.1"):
            output.claim(store, "run-b")
        first = leases.current(store).expires_at
        assert wait_for(lambda: leases.current(store).expires_at > first, timeout=10)  # the new epoch is renewed
    assert leases.current(store).released and leases.current(store).run_id == "run-a.1"
    assert sorted(output.read_output(store, columns=["id"]).column("id").to_pylist()) == [f"id-{i}" for i in range(4)]


def test_the_driver_restarts_on_what_is_pending_within_the_limit(tmp_path, monkeypatch):
    """The graph fails twice after committing 2 ids each time (a node lost each time), then
    finishes: each attempt commits under its own id, gets what is left of ``limit`` and starts
    with the actors the GPUs left hold; the loop stops after MAX_RESTARTS."""
    monkeypatch.setattr(leases, "COMMIT_WINDOW_S", 0.05)
    monkeypatch.setattr(recovery, "nodes", lambda alive=True: {"node-a", "node-b"} if alive else set())
    monkeypatch.setattr(recovery, "lost_nodes", lambda _, exc: {"node-b"} if recovery.is_system_error(exc) else set())
    monkeypatch.setattr(recovery, "actors_now", lambda wanted, gpus, wait_s: 1)
    ids = [f"id-{i}" for i in range(10)]
    calls = []

    def graph_failing(times: int):
        def run_graph(attempt, inputs, done, out, run_id, res, todo, carried, actor_cls, min_actors):
            calls.append((run_id, todo, attempt.limit, min_actors))
            pending = [i for i in ids if i not in set(done.to_pylist())]
            if len(calls) <= times:
                output.commit(out, run_id, rows(pending[:2]))
                raise rex.NodeDiedError("node-b died")
            output.commit(out, run_id, rows(pending[:todo]))
        return run_graph

    store = Storage.from_uri(str(tmp_path / "out"))
    cfg = JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(tmp_path / "out"), actors=2, limit=7)
    res, inputs, report = Resources(gpus=1.0, cpus=0.0, device="cpu"), SimpleNamespace(ids=pa.array(ids)), \
        recovery.Recovery()
    monkeypatch.setattr(graph, "run_graph", graph_failing(times=2))
    with leases.held(store, "run") as holding:
        graph._run_recovering(cfg, inputs, pa.array([], pa.string()), 7, store, holding, res, pa.schema([]),
                              object, report)
        assert leases.current(store).run_id == "run.2"
    assert calls == [("run", 7, 7, None), ("run.1", 5, 5, 1), ("run.2", 3, 3, 1)]
    assert len(output.read_output(store, columns=["id"])) == 7
    assert (report.restarts, len(report.recover_s), report.lost_nodes) == (2, 2, ["node-b"])

    monkeypatch.setattr(recovery, "MAX_RESTARTS", 1)
    monkeypatch.setattr(graph, "run_graph", graph_failing(times=99))
    calls.clear()
    with pytest.raises(rex.NodeDiedError), leases.held(Storage.from_uri(str(tmp_path / "again")), "again") as holding:
        graph._run_recovering(cfg, inputs, pa.array([], pa.string()), 7, holding.storage, holding, res,
                              pa.schema([]), object, recovery.Recovery())
    assert [c[0] for c in calls] == ["again", "again.1"]
