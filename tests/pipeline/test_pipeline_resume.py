"""Acceptance 3: exactly once across failures. Kill the driver midway and rerun; kill a sampler actor
midway and let Ray restart it. Either way every input id ends up in the output exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from input_kinds import img2dataset_shard, metadata
from pipeline_testdata import FAST, assert_exactly_once, committed, good_rows, read_rows, wait_for, write_shards

import pipeline
from pipeline import leases, output
from pipeline.config import JobConfig
from pipeline.storage import Storage

SLOWER = {"steps": 6, "newton_steps": 2}  # ~1 s per batch: slow enough to be killed midway


def test_kill_the_driver_midway_then_rerun(ray_address, tmp_path):
    """WebDataset shards written in files of three batches, so that one kill also shows their metadata
    (json, txt) surviving a crash. (A driver killed with one batch per file:
    test_pipeline_files_and_retries's retry-errors test.)"""
    (tmp_path / "in").mkdir()
    keys = []
    for shard in range(6):
        data, shard_keys = img2dataset_shard(shard, per_shard=4, corrupt="", maskless="")
        (tmp_path / "in" / f"{shard:05d}.tar").write_bytes(data)
        keys += shard_keys
    source, out = str(tmp_path / "in" / "{00000..00005}.tar"), tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())", "run", "restore",
           "--input", source, "--output", str(out), "--model", "tiny", "--actors", "1", "--batch-size", "2",
           "--rows-per-file", "6", "--steps", str(SLOWER["steps"]), "--newton-steps", str(SLOWER["newton_steps"])]
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: len(committed(out)) >= 1 or driver.poll() is not None, timeout=240), "no commit"
            driver.send_signal(signal.SIGKILL)
        finally:
            driver.kill()
            driver.wait()
    first = read_rows(str(out), columns=["id"]).column("id").to_pylist()
    assert 0 < len(first) < len(keys), f"the driver was not killed midway ({len(first)} committed)"
    assert len(first) == len(set(first))
    assert all(pq.read_metadata(f).num_rows >= 6 for f in committed(out))  # files of three batches, not one
    (out / "_fcs" / "tmp").mkdir(parents=True, exist_ok=True)
    (out / "_fcs" / "tmp" / "partial.tmp").write_bytes(b"PAR1 half a file")  # what a killed write leaves

    cfg = JobConfig(model="tiny", input=source, output=str(out), actors=1, batch_size=2, rows_per_file=6,
                    sampler=FAST)  # only the killed run needs to be slow
    summary = pipeline.run(cfg)
    table = pads.dataset(str(out), format="parquet").to_table()  # as a user reads it: every file, one schema
    assert_exactly_once(table, keys)
    assert set(first) <= set(table.column("id").to_pylist())
    assert summary["this_run"]["rows"] == len(keys) - len(first)
    assert (summary["pending"], summary["duplicates"], summary["ok"]) == (0, 0, len(keys))
    assert not (out / "_fcs" / "tmp" / "partial.tmp").exists()
    assert table.schema.names == pipeline.TASKS["restore"].schema.names + ["json", "txt"]  # the carried columns
    for row in table.to_pylist():
        assert row["status"] == "ok" and json.loads(row["json"]) == metadata(row["id"])
        assert row["txt"] == f"photo {row['id']}"
    assert read_rows(str(out), columns=["id", "status"]).num_rows == len(keys)  # resume's own read

    again = pipeline.run(cfg)
    assert again["this_run"]["rows"] == 0 and again["rows"] == len(keys)  # nothing left to do


def _sampler_workers() -> list[int]:
    """Pids of this session's Ray worker processes running the sampler actor."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if "TaskActor)" in cmdline and ppid == raylet:  # MapBatches(CarryingTaskActor)
            found.append(int(pid))
    return found


def test_kill_a_sampler_actor_midway(ray_address, tmp_path):
    rows = good_rows(16)
    write_shards(tmp_path / "in", rows, per_shard=4)
    out = tmp_path / "out"
    killed: list[int] = []
    done_at_kill: list[int] = []

    def killer() -> None:
        if wait_for(lambda: len(committed(out)) >= 1, timeout=240) and (pids := _sampler_workers()):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            done_at_kill.append(len(read_rows(str(out), columns=["id"])))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = pipeline.run(JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(out), actors=2, batch_size=2,
                                     rows_per_file=4, sampler=SLOWER))  # files of two batches each
    thread.join(timeout=5)
    assert killed, "no sampler actor was killed"
    assert done_at_kill[0] < len(rows), "the actor was killed after all the work was done"
    assert_exactly_once(read_rows(str(out)), [r["id"] for r in rows])
    assert (summary["pending"], summary["duplicates"], summary["ok"]) == (0, 0, len(rows))


def test_a_superseded_run_commits_nothing(tmp_path):
    store = Storage.from_uri(str(tmp_path))
    table = pa.table({"id": ["a"], "status": ["ok"]}).cast(
        pa.schema([output.OUTPUT_SCHEMA.field("id"), output.OUTPUT_SCHEMA.field("status")]))
    output.claim(store, "run-1")
    leases.renew(store, leases.current(store), lease_s=-1)  # run-1's driver is gone: its lease expired
    output.claim(store, "run-2")  # a rerun took over while run-1's write task was still alive
    with pytest.raises(RuntimeError, match="owned by run run-2"):
        output.commit(store, "run-1", table)
    assert output.committed_files(store) == []
    output.commit(store, "run-2", table)
    output.commit(store, "run-2", table)  # a retried write task overwrites its own file
    assert len(output.committed_files(store)) == 1


def test_file_names_tell_apart_id_sets_that_join_alike():
    """A file's name is a digest of its ids: one id holding a newline is not the two ids around it."""
    assert output.part_name(["a\nb"]) != output.part_name(["a", "b"])
    assert output.part_name(["b", "a"]) == output.part_name(["a", "b"])  # order does not matter
