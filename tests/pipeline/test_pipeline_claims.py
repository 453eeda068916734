"""Two live runs on one output never both commit an id. The interleavings that
matter are driven step by step at the claim/commit level on a local folder, moto and SeaweedFS
(each "run" is a claim plus the commits its write tasks would make); one end-to-end check runs two
real jobs on one local folder."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid

import pyarrow as pa
import pytest
from pipeline_testdata import FAST, assert_exactly_once, good_rows, read_rows, wait_for, write_shards

import pipeline
from pipeline import leases, output
from pipeline.config import JobConfig
from pipeline.storage import Storage

IDS = [f"id-{i:02d}" for i in range(8)]
FIELDS = pa.schema([output.OUTPUT_SCHEMA.field("id"), output.OUTPUT_SCHEMA.field("status")])


@pytest.fixture(params=["local", "moto", "seaweedfs"])
def store(request, tmp_path) -> Storage:
    """A fresh output location on a local folder, the moto server or the SeaweedFS server."""
    if request.param == "local":
        return Storage.from_uri(str(tmp_path / "out"))
    prefix = f"claims-{uuid.uuid4().hex[:8]}/out"  # bucket names are cut short: parametrized tests share one
    if request.param == "moto":
        return Storage.from_uri(f"s3://{request.getfixturevalue('bucket')}/{prefix}",
                                request.getfixturevalue("s3_endpoint"))
    return Storage.from_uri(f"s3://fcs/{prefix}", request.getfixturevalue("seaweed"))


def twin(store: Storage) -> Storage:
    """The same location as another process sees it (its own Storage)."""
    return Storage(store.protocol, store.root, store.endpoint)


def rows(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "status": ["ok"] * len(ids)}).cast(FIELDS)


def committed_ids(store: Storage) -> list[str]:
    return output.read_output(store, columns=["id"]).column("id").to_pylist()


def pending(store: Storage, files: list[str]) -> list[str]:
    done = set(output.read_output(store, files, ["id"]).column("id").to_pylist())
    return [i for i in IDS if i not in done]


def expire(store: Storage) -> None:
    """The holder's driver stopped renewing its lease long enough ago for it to expire."""
    leases.renew(store, leases.current(store), lease_s=-1)


def test_the_store_honours_create_only_writes(store):
    """The conditional-write matrix: every store here refuses a second create of one key."""
    path = store.path("_fcs", "lease", "probe-key")
    assert store.put_new(path, b"first") and not store.put_new(path, b"second")
    assert store.read_bytes(path) == b"first"
    assert store.create_is_atomic(store.path("_fcs", "lease", "probe"))


def test_a_second_run_fails_fast_while_the_first_is_live(store):
    output.claim(store, "run-a")
    output.commit(store, "run-a", rows(IDS[:4]))
    with pytest.raises(leases.LeaseHeld, match=r"in use by run run-a \(host .+, pid \d+, started 20\d\d-"):
        output.claim(twin(store), "run-b")
    with pytest.raises(RuntimeError, match="owned by run run-a; run run-b commits nothing"):
        output.commit(twin(store), "run-b", rows(IDS))  # a write task of the refused run, had it started any
    output.commit(store, "run-a", rows(IDS[4:]))
    assert sorted(committed_ids(store)) == IDS
    assert issubclass(leases.LeaseHeld, ValueError)  # fcs run: exit code 2, nothing run


@pytest.mark.parametrize("stale", [False, True], ids=["fresh-output", "stale-lease"])
def test_runs_starting_at_once_have_one_winner(store, stale):
    if stale:  # a crashed run's expired lease, which every racer may take over
        output.claim(store, "crashed")
        expire(store)
    racers, barrier = 6, threading.Barrier(6)
    won, refused = [], []

    def run(k: int) -> None:
        mine = twin(store)
        barrier.wait()
        try:
            files = output.claim(mine, f"run-{k}")
        except leases.LeaseHeld as exc:
            refused.append(str(exc))
            return
        won.append(k)
        output.commit(mine, f"run-{k}", rows(pending(mine, files)))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(racers)]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]
    assert len(won) == 1 and len(refused) == racers - 1, (won, refused)
    assert all(f"run-{won[0]} " in message for message in refused)
    assert leases.current(store).epoch == (2 if stale else 1)
    assert sorted(committed_ids(store)) == IDS


def test_a_takeover_of_a_stale_lease_refuses_the_old_runs_commits(store, monkeypatch):
    """The first run's driver stops renewing (its write tasks live on); the second takes over; the
    first's commits before the takeover count, those after it are refused: every id once."""
    output.claim(store, "run-a")
    output.commit(store, "run-a", rows(IDS[:2]))  # lands before the takeover
    leases.renew(store, leases.current(store), lease_s=leases.COMMIT_WINDOW_S / 2)  # about to expire
    with pytest.raises(RuntimeError, match="run run-a's lease .* ends in"):
        output.commit(store, "run-a", rows(IDS[2:4]))  # too close to the end: it could land after a takeover
    with pytest.raises(leases.LeaseHeld, match="run run-a"):
        output.claim(twin(store), "run-b")  # not expired yet: still live
    expire(store)
    b = twin(store)
    started = time.monotonic()
    files = output.claim(b, "run-b")
    assert time.monotonic() - started < leases.COMMIT_WINDOW_S / 2  # an expired lease: no window to wait out
    with pytest.raises(RuntimeError, match="owned by run run-b; run run-a commits nothing"):
        output.commit(store, "run-a", rows(IDS[2:]))  # the first run's write task after the takeover
    assert pending(b, files) == IDS[2:]
    output.commit(b, "run-b", rows(pending(b, files)))
    assert_exactly_once(read_rows(store.uri(), ["id"], store.endpoint), IDS)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_crashed_driver_here_is_taken_over_after_the_commit_window(tmp_path, monkeypatch):
    """A driver that died on this host holds a lease that has not expired: the rerun takes over at
    once and waits out the window its write tasks had to land in. The same pid on another host
    proves nothing: that lease is live until it expires."""
    monkeypatch.setattr(leases, "COMMIT_WINDOW_S", 0.5)
    dead, now = _dead_pid(), time.time()
    for host, folder in ((socket.gethostname(), "here"), ("elsewhere", "there")):
        store = Storage.from_uri(str(tmp_path / folder))
        crashed = leases.Lease("run-a", 1, host, dead, now, now + 60)
        assert store.put_new(store.path(leases.FOLDER, "00000001.json"), crashed.to_bytes())
        started = time.monotonic()
        if host == "elsewhere":
            with pytest.raises(leases.LeaseHeld, match="run run-a \\(host elsewhere"):
                output.claim(store, "run-b")
            continue
        output.claim(store, "run-b")
        assert 0.5 <= time.monotonic() - started < 5
        assert (leases.current(store).run_id, leases.current(store).epoch) == ("run-b", 2)


def test_a_held_lease_is_renewed_then_released(tmp_path, monkeypatch):
    monkeypatch.setattr(leases, "COMMIT_WINDOW_S", 2.0)
    store = Storage.from_uri(str(tmp_path / "out"))
    with leases.held(store, "run-a", lease_s=30, every_s=0.05) as holding:
        first = holding.lease
        assert wait_for(lambda: leases.current(store).expires_at > first.expires_at, timeout=10)
        with pytest.raises(leases.LeaseHeld):
            output.claim(store, "run-b")
    assert leases.current(store).released
    started = time.monotonic()
    with pytest.raises(KeyError), leases.held(store, "run-b"):  # a run that fails: its write tasks get a grace
        raise KeyError("boom")
    assert time.monotonic() - started < 1.5  # released at the end of run-a: no wait
    with pytest.raises(RuntimeError, match="was released"):
        output.commit(store, "run-b", rows(IDS))
    started = time.monotonic()
    output.claim(store, "run-c")
    assert 1.5 < time.monotonic() - started < 10  # waited out run-b's grace
    assert leases.current(store).epoch == 3


def test_a_store_without_atomic_create_still_refuses_a_live_run(monkeypatch):
    """Best effort (GCS here, or an S3 store ignoring If-None-Match): checked, written, read back."""
    monkeypatch.setattr(leases, "SETTLE_S", 0.05)
    store = Storage.from_uri(f"memory://claims-{uuid.uuid4().hex[:8]}/out")
    assert not store.create_is_atomic(store.path(leases.FOLDER, "probe"))
    output.claim(store, "run-a")
    with pytest.raises(leases.LeaseHeld, match="run run-a"):
        output.claim(twin(store), "run-b")


def test_two_jobs_on_one_output(ray_address, tmp_path, capsys):
    """End to end: a job started while another runs on the same output exits with code 2 naming the
    running one, before any work; the first finishes with every id once; a rerun right after it
    starts at once (the lease was released) and finds nothing to do."""
    from jobs.batch import main

    items = good_rows(4)
    write_shards(tmp_path / "in", items, per_shard=2)
    out = tmp_path / "out"
    cfg = JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(out), actors=1, batch_size=2, sampler=FAST)
    second: dict = {}

    def start_a_second_job() -> None:
        if wait_for(lambda: (out / leases.FOLDER / "00000001.json").exists(), timeout=120):
            second["running"] = leases.current(Storage.from_uri(str(out))).run_id
            started = time.monotonic()
            second["code"] = main("restore", ["--input", str(tmp_path / "in"), "--output", str(out), "--model", "tiny"])
            second["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=start_a_second_job)
    thread.start()
    first = pipeline.run(cfg)
    thread.join(timeout=60)
    assert second["code"] == 2 and second["seconds"] < 10, second
    assert f"in use by run {second['running']} " in capsys.readouterr().err
    assert second["running"] == first["run_id"]
    assert (first["ok"], first["duplicates"], first["pending"]) == (4, 0, 0)
    assert_exactly_once(read_rows(str(out)), [r["id"] for r in items])
    started = time.monotonic()
    again = pipeline.run(cfg)
    assert again["this_run"]["rows"] == 0 and time.monotonic() - started < 30
