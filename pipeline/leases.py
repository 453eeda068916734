"""Which run may commit to an output: one lease per claim, taken with a create-only write.

    _fcs/lease/<epoch>.json   one object per claim, epochs 1, 2, 3, ...; the highest epoch owns the
                              output: {run_id, host, pid, started_at, expires_at, released}

A run claims the output by creating the object of the next epoch with a create-only write (an S3 PUT
with ``If-None-Match: *``, a hard link on a local disk): of two runs racing for an epoch exactly one
creates it, the other looks again and finds a live lease. A run may take the next epoch only when the
current lease is over: released (its run ended), expired (not renewed for ``LEASE_S``: its driver is
presumed gone), or held by a pid that no longer exists on this host (a crashed driver here). Otherwise
it fails fast with :class:`LeaseHeld` (a ValueError: exit code 2, before any Ray work) naming the run.

The driver renews its lease every ``HEARTBEAT_S`` (:func:`held`). Before each commit a write task
checks that its run's epoch is still the highest and that the lease has ``COMMIT_WINDOW_S`` left
(:func:`check`); a run that took over a lease that had not expired (a dead pid, an error release)
waits out that window before listing what is committed. So a commit either lands before the takeover
(and the new run sees it) or is refused, as long as an upload lands within ``COMMIT_WINDOW_S`` of its
check and the machines' clocks agree to within a few seconds.

Why epochs and not one owner object replaced with ``If-Match`` (compare-and-swap): moto 5.2.6 and
SeaweedFS 4.48 let two concurrent PUTs with the same ``If-Match`` ETag both succeed (2 winners in
13 % and 19 % of rounds of 8 racing writers), while create-only PUTs had one winner in all 150 rounds
on both. On a store where create-only is not atomic (GCS through gcsfs, or an S3 store that ignores
the header: :meth:`Storage.create_is_atomic`) a claim is a check, a write, and a read back after
``SETTLE_S``: a live run is still refused, two runs starting within the same instant may both win.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

from pipeline.storage import Storage

FOLDER = "_fcs/lease"
LEASE_S = 60.0          # a lease not renewed for this long has expired: its driver is presumed gone
HEARTBEAT_S = 10.0      # the driver renews its lease this often
COMMIT_WINDOW_S = 10.0  # a commit needs this long left on its lease; its upload must land within it
SETTLE_S = 1.0          # stores without atomic create: wait before reading a claim back
ATTEMPTS = 3            # lost creates before giving up (each loser normally finds a live lease at once)

log = logging.getLogger(__name__)


class LeaseHeld(ValueError):
    """Another live run holds the output (a ValueError: ``fcs run`` exits with code 2)."""


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class Lease:
    run_id: str
    epoch: int
    host: str
    pid: int
    started_at: float
    expires_at: float
    released: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Lease:
        return cls(**json.loads(data))

    def gone(self) -> bool:
        """Whether its driver is known to have exited: it ran on this host and its pid is free."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # someone else's process has that pid now: it is alive
            return False
        return False

    def over(self, now: float) -> bool:
        return self.released or now >= self.expires_at or self.gone()

    def describe(self, now: float) -> str:
        return (f"run {self.run_id} (host {self.host}, pid {self.pid}, started {_utc(self.started_at)}, "
                f"lease valid until {_utc(self.expires_at)}, {self.expires_at - now:.0f} s from now)")


def _path(storage: Storage, epoch: int) -> str:
    return storage.path(FOLDER, f"{epoch:08d}.json")


def current(storage: Storage) -> Lease | None:
    """The lease of the highest epoch (None before the first claim)."""
    found = storage.list_files(f"{FOLDER}/*.json")
    return Lease.from_bytes(storage.read_bytes(found[-1])) if found else None


def _held_message(storage: Storage, holder: Lease, now: float) -> str:
    return (f"output {storage.uri()} is in use by {holder.describe(now)}: two live runs on one output could "
            "write ids twice. Wait for that run to end or stop it, or give another --output; if its driver is "
            "gone (another machine), rerun once its lease has expired")


def acquire(storage: Storage, run_id: str, lease_s: float = LEASE_S, succeeds: str | None = None) -> Lease:
    """Take the next epoch for ``run_id`` if the current lease is over (or already ``run_id``'s, or
    held by ``succeeds``: this driver's previous attempt), and wait out the previous holder's commit
    window if its lease had not expired; raises :class:`LeaseHeld` naming the live run otherwise."""
    atomic = storage.create_is_atomic(storage.path(FOLDER, "probe"))
    for _ in range(ATTEMPTS):
        now = time.time()
        previous = current(storage)
        if previous is not None and previous.run_id == run_id and not previous.released:
            return previous  # ours already (or our create landed though its reply was lost)
        if previous is not None and not previous.over(now) and previous.run_id != succeeds:
            raise LeaseHeld(_held_message(storage, previous, now))
        mine = Lease(run_id, previous.epoch + 1 if previous else 1, socket.gethostname(), os.getpid(), now,
                     now + lease_s)
        if storage.put_new(_path(storage, mine.epoch), mine.to_bytes()):
            break
    else:
        holder = current(storage)
        raise LeaseHeld(_held_message(storage, holder, time.time()))
    if not atomic:
        time.sleep(SETTLE_S)
        holder = Lease.from_bytes(storage.read_bytes(_path(storage, mine.epoch)))
        if holder.run_id != run_id:
            raise LeaseHeld(_held_message(storage, holder, time.time()))
    if previous is not None and (wait := min(COMMIT_WINDOW_S, previous.expires_at - time.time())) > 0:
        log.info("run %s took over %s from run %s; waiting %.0f s for its last commits to land", run_id,
                 storage.uri(), previous.run_id, wait)
        time.sleep(wait)
    return mine


def renew(storage: Storage, lease: Lease, lease_s: float = LEASE_S) -> Lease:
    """Extend ``lease`` by ``lease_s`` from now (only its holder writes its epoch's object)."""
    renewed = replace(lease, expires_at=time.time() + lease_s)
    storage.put_atomic(_path(storage, lease.epoch), renewed.to_bytes())
    return renewed


def release(storage: Storage, run_id: str, grace_s: float = 0.0) -> None:
    """End ``run_id``'s lease if it still holds the output; ``grace_s``: how long write tasks that
    may still be in flight (a failed run) have to land, which the next run waits out."""
    lease = current(storage)
    if lease is not None and lease.run_id == run_id:
        ended = replace(lease, released=True, expires_at=time.time() + grace_s)
        storage.put_atomic(_path(storage, lease.epoch), ended.to_bytes())


def check(storage: Storage, run_id: str) -> None:
    """Raise unless ``run_id`` holds the output with at least ``COMMIT_WINDOW_S`` left on its lease."""
    lease, now = current(storage), time.time()
    if lease is None or lease.run_id != run_id:
        raise RuntimeError(f"output {storage.uri()} is now owned by run {lease.run_id if lease else None}; "
                           f"run {run_id} commits nothing")
    if lease.released or lease.expires_at - now < COMMIT_WINDOW_S:
        state = "was released" if lease.released else \
            f"ends in {lease.expires_at - now:.0f} s (its driver stopped renewing it)"
        raise RuntimeError(f"run {run_id}'s lease on {storage.uri()} {state}; it commits nothing")


class Holding:
    """The lease a driver holds, renewed in the background by :func:`held`; :meth:`hand_over` moves
    it to the driver's next attempt, so that the write tasks of a failed attempt still in flight
    commit nothing once the next attempt lists what is committed."""

    def __init__(self, storage: Storage, lease: Lease, lease_s: float) -> None:
        self.storage, self.lease, self.lease_s = storage, lease, lease_s
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return self.lease.run_id

    def hand_over(self, run_id: str) -> None:
        """Take the next epoch for ``run_id`` (waiting out this lease's commit window)."""
        with self._lock:
            self.lease = acquire(self.storage, run_id, self.lease_s, succeeds=self.lease.run_id)

    def renew(self) -> None:
        with self._lock:
            self.lease = renew(self.storage, self.lease, self.lease_s)


def _renew_until(stop: threading.Event, holding: Holding, every_s: float) -> None:
    while not stop.wait(every_s):
        try:
            holding.renew()
        except Exception as exc:  # noqa: BLE001 - a failed renewal is retried next beat; commits stop near expiry
            log.warning("run %s: renewing its lease on %s failed (%s: %s)", holding.run_id, holding.storage.uri(),
                        type(exc).__name__, exc)


@contextlib.contextmanager
def held(storage: Storage, run_id: str, lease_s: float = LEASE_S, every_s: float = HEARTBEAT_S) -> Iterator[Holding]:
    """Hold the output for the block: :func:`acquire`, renew every ``every_s`` in a background
    thread, release at the end (after a failure with ``COMMIT_WINDOW_S`` of grace for write tasks
    still in flight)."""
    holding = Holding(storage, acquire(storage, run_id, lease_s), lease_s)
    stop = threading.Event()
    beat = threading.Thread(target=_renew_until, args=(stop, holding, every_s), daemon=True, name=f"lease-{run_id}")
    beat.start()
    failed = True
    try:
        yield holding
        failed = False
    finally:
        stop.set()
        beat.join()
        try:
            release(storage, holding.run_id, COMMIT_WINDOW_S if failed else 0.0)
        except Exception as exc:  # noqa: BLE001 - never hide the block's own error; the lease expires anyway
            log.warning("run %s: releasing its lease on %s failed (%s: %s)", holding.run_id, storage.uri(),
                        type(exc).__name__, exc)
