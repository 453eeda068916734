"""Jobs at scale: data-lake-sized output files, transient read failures retried on a real S3
endpoint, and error rows processed again with ``retry_errors``, every id exactly once throughout."""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import s3fs
from pipeline_testdata import FAST, assert_exactly_once, committed, hole, photo, png, read_rows, wait_for, write_shards

import pipeline
from pipeline.config import JobConfig
from pipeline.output import ROWS_PER_FILE

ONE_STEP = {"method": "ddim", "steps": 1}  # a near-instant sampler: the pipeline's own costs show
SLOWER = {"steps": 6, "newton_steps": 2}   # ~1 s per batch: slow enough to be killed midway


def _rows(n: int, size: int = 32, prefix: str = "item") -> list[dict]:
    image, mask = png(photo(size, size)), png(hole(size, size))
    return [{"id": f"{prefix}-{i:05d}", "image": image, "mask": mask} for i in range(n)]



def test_a_thousand_items_make_a_handful_of_files(ray_address, tmp_path):
    rows = _rows(1000)
    write_shards(tmp_path / "in", rows, per_shard=100)
    out = tmp_path / "out"
    summary = pipeline.run(JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(out), batch_size=4,
                                     sampler=ONE_STEP))
    assert (summary["ok"], summary["pending"], summary["duplicates"]) == (1000, 0, 0)
    assert_exactly_once(read_rows(str(out), columns=["id"]), [r["id"] for r in rows])
    sizes = sorted(pq.read_metadata(f).num_rows for f in committed(out))
    assert len(sizes) <= 1000 // ROWS_PER_FILE + 1, sizes  # 2 files by default, not 250
    assert sizes[-1] >= ROWS_PER_FILE



def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())", "run", "restore",
            "--model", "tiny", *args]


# A driver killed while writing files of several batches: test_pipeline_resume's driver-kill test.


class FlakyS3:
    """An HTTP proxy in front of the moto server whose object GETs for keys containing ``images/flaky`` fail
    with 404 NoSuchKey the first ``failures`` times each (an object not visible yet); the rest passes."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures, self.seen = urlparse(upstream), failures, {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.path.split("?")[0]
                if self.command == "GET" and "images/flaky" in key:
                    proxy.seen[key] = proxy.seen.get(key, 0) + 1
                    if proxy.seen[key] <= proxy.failures:
                        error = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>not yet</Message></Error>"
                        self.send_response(404)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(error)))
                        self.end_headers()
                        self.wfile.write(error)
                        return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                conn.request(self.command, self.path, body or None, dict(self.headers))
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


def test_transient_read_failures_on_s3_are_retried(ray_address, s3_endpoint, bucket, tmp_path):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    image, mask = png(photo()), png(hole())
    ids = ["steady-0", "steady-1", "flaky-0", "flaky-1"]
    fs.pipe({**{f"{bucket}/in/images/{i}.png": image for i in ids},
             **{f"{bucket}/in/masks/{i}.png": mask for i in ids}})
    proxy = FlakyS3(s3_endpoint, failures=2)
    try:
        cfg = dict(model="tiny", input=f"s3://{bucket}/in", s3_endpoint=proxy.url, batch_size=2,
                   sampler={"steps": 2, "newton_steps": 1})
        # (outputs on local disk: the proxy serves the input's reads only)
        retried = pipeline.run(JobConfig(**cfg, output=str(tmp_path / "retried")))  # 4 attempts by default
        assert (retried["ok"], retried["error"]) == (4, 0)
        assert len(proxy.seen) == 2 and all(n == 3 for n in proxy.seen.values()), proxy.seen  # 2 failures + 1

        proxy.seen.clear()
        proxy.failures = 1  # one failed GET per object from here on
        once = pipeline.run(JobConfig(**cfg, output=str(tmp_path / "once"), read_attempts=1))
        table = {r["id"]: r for r in read_rows(str(tmp_path / "once")).to_pylist()}
        assert (once["ok"], once["error"]) == (2, 2)
        for i in ("flaky-0", "flaky-1"):
            assert table[i]["status"] == "error" and table[i]["error_kind"] == "transient"
            assert table[i]["error"].startswith("read: cannot read image"), table[i]["error"]
        # the objects are visible now (the proxy's failures are spent): a rerun retries the transient rows
        rerun = pipeline.run(JobConfig(**cfg, output=str(tmp_path / "once"), read_attempts=1, retry_errors="transient"))
        assert (rerun["ok"], rerun["error"], rerun["duplicates"], rerun["this_run"]["rows"]) == (4, 0, 0, 2)
        assert_exactly_once(read_rows(str(tmp_path / "once")), ids)
    finally:
        proxy.close()


def _folder(root: Path, good: int, bad: int) -> tuple[list[str], list[str]]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    good_ids, bad_ids = [f"good-{i:02d}" for i in range(good)], [f"bad-{i:02d}" for i in range(bad)]
    for i in good_ids + bad_ids:
        (root / "images" / f"{i}.png").write_bytes(png(photo()) if i in good_ids else b"not an image")
        (root / "masks" / f"{i}.png").write_bytes(png(hole()))
    return good_ids, bad_ids


def test_retry_errors_after_fixing_inputs_survives_a_driver_kill(ray_address, tmp_path):
    good_ids, bad_ids = _folder(tmp_path / "in", good=4, bad=8)
    out = tmp_path / "out"
    cfg = dict(model="tiny", input=str(tmp_path / "in"), output=str(out), batch_size=2, rows_per_file=4, sampler=FAST)
    first = pipeline.run(JobConfig(**cfg))
    assert (first["ok"], first["error"]) == (4, 8)
    kinds = {r["id"]: r["error_kind"] for r in read_rows(str(out)).to_pylist()}
    assert {kinds[i] for i in bad_ids} == {"permanent"} and {kinds[i] for i in good_ids} == {None}

    for i in bad_ids:  # the user fixes the broken files
        (tmp_path / "in" / "images" / f"{i}.png").write_bytes(png(photo(seed=7)))
    plain = pipeline.run(JobConfig(**cfg))
    assert (plain["this_run"]["rows"], plain["error"]) == (0, 8)  # without the flag, error rows count as done
    assert pipeline.run(JobConfig(**cfg, retry_errors="transient"))["this_run"]["rows"] == 0  # decode: is permanent

    # a rerun with --retry-errors killed midway (only it needs the slow sampler), then run again: every id
    # exactly once, all ok
    before = set(committed(out))
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--batch-size", "2", "--rows-per-file", "2",
            "--retry-errors", "--steps", str(SLOWER["steps"]), "--newton-steps", str(SLOWER["newton_steps"])]
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    with open(tmp_path / "driver.log", "wb") as f:
        driver = subprocess.Popen(_cli(*args), env=env, stdout=f, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: bool(set(committed(out)) - before) or driver.poll() is not None, timeout=240)
            driver.send_signal(signal.SIGKILL)
        finally:
            driver.kill()
            driver.wait()
    mid = read_rows(str(out)).to_pylist()
    assert len({r["id"] for r in mid}) == len(mid)  # never a duplicate, even mid-way
    assert 0 < sum(r["status"] == "ok" and r["id"] in bad_ids for r in mid) < len(bad_ids), "not killed midway"
    final = pipeline.run(JobConfig(**cfg, retry_errors="all"))
    table = read_rows(str(out))
    assert_exactly_once(table, good_ids + bad_ids)
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert (final["ok"], final["error"], final["duplicates"]) == (12, 0, 0)


def test_retry_errors_rewrites_only_files_with_error_rows(tmp_path):
    from pipeline import output
    from pipeline.storage import Storage

    store = Storage.from_uri(str(tmp_path))
    output.claim(store, "run")
    schema = output.OUTPUT_SCHEMA
    rows = lambda *specs: pa.Table.from_pylist(  # noqa: E731
        [{"id": i, "status": "error" if e else "ok", "error": e} for i, e in specs], schema=schema)
    output.commit(store, "run", rows(("a", None), ("b", "read: timeout"), ("c", "decode: cannot decode image")))
    output.commit(store, "run", rows(("d", "sample: CUDA out of memory")))
    output.commit(store, "run", rows(("e", None)))
    files = output.committed_files(store)
    untouched = {f: Path(f).read_bytes() for f in files}
    after, dropped = output.drop_errors(store, files, ("transient",))
    assert dropped == 2 and len(after) == 2  # the file left empty is gone
    ids = sorted(output.read_output(store, after, ["id"]).column("id").to_pylist())
    assert ids == ["a", "c", "e"]
    assert sum(Path(f).read_bytes() == untouched[f] for f in after) == 1  # "e"'s file was not rewritten
    assert output.drop_errors(store, after, ())[1] == 0
    assert output.drop_errors(store, after, ("transient", "permanent"))[1] == 1
