"""The parts of recovering from a lost node that need no cluster: which failures count as Ray's, and
handing the output to the driver's next attempt (the failed attempt's late commits are refused).
The whole recovery on a real cluster: test_node_loss.py."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
from pipeline_testdata import wait_for
from ray import exceptions as rex
from ray.data.exceptions import SystemException

from pipeline import leases, output, recovery
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


@pytest.mark.parametrize("error", [
    rex.ActorUnavailableError("actor unavailable", None), rex.ActorDiedError(), rex.NodeDiedError("node died"),
    rex.RaySystemError("lost"), raised_from(rex.ActorUnavailableError("actor unavailable", None)),
    raised_from(SystemException()),
])
def test_ray_failures_count_as_system_errors(error):
    assert recovery.is_system_error(error)


@pytest.mark.parametrize("error", [ValueError("bad config"), raised_from(KeyError("column")), RuntimeError("boom")])
def test_the_jobs_own_errors_do_not_wait_for_a_lost_node(error):
    started = time.monotonic()
    assert not recovery.is_system_error(error)
    assert recovery.lost_nodes({"some-node"}, error) == set()  # no cluster asked, no wait
    assert time.monotonic() - started < 0.5


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
