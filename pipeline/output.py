"""Output Parquet with exactly-once commits.

Layout of an output location::

    part-<hash of the file's sorted ids>.parquet   committed rows (the only files that count), about
                                                   ``rows_per_file`` rows each
    _fcs/lease/<epoch>.json                        one per run that claimed the output; the highest
                                                   epoch is the run allowed to commit (pipeline.leases)
    _fcs/tmp/                                      local staging; partial files never count
    _summary.json                                  the last run's summary

Ray Data bundles finished rows until a write holds ``rows_per_file`` of them, and each write publishes
one file atomically (object-store PUT, or rename on local disks) under a name derived from its ids, so
a retried write task overwrites its own file instead of adding a copy. The trade-off: rows that are
sampled but still waiting for their bundle to fill are redone after a driver crash (at most about
``rows_per_file`` per write in flight), while fewer, larger files cost every reader less.
A run first claims the output (:mod:`pipeline.leases`), then skips every id in the committed files.
One run holds an output at a time: a second run started while the first is live fails fast naming it
(of two starting at once, exactly one wins where the store has atomic create-only writes: local
disks, S3, MinIO, SeaweedFS); a rerun after a crash takes over once the crashed run's lease is over,
and a write task of the older run that is still alive sees it lost the output and commits nothing.
Readers
(``pandas.read_parquet``, pyarrow, Ray) skip ``_``-prefixed paths, so the folder reads as the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasink
from ray.data.block import BlockAccessor

from pipeline import leases
from pipeline.schema import METRIC_COLUMNS, OUTPUT_SCHEMA
from pipeline.storage import Storage

ROWS_PER_FILE = 512  # a 1,000-item job writes 2 files, a million-item one about 2,000 (~5 MB each at 32x32)


def part_name(ids: Iterable[str]) -> str:
    digest = hashlib.sha1(json.dumps(sorted(ids)).encode()).hexdigest()[:24]  # JSON: ids holding "\n" stay apart
    return f"part-{digest}.parquet"


def committed_files(storage: Storage) -> list[str]:
    return storage.list_files("part-*.parquet")


def read_output(storage: Storage, files: list[str] | None = None, columns: list[str] | None = None,
                schema: pa.Schema = OUTPUT_SCHEMA, ids: Iterable[str] | None = None) -> pa.Table:
    """The committed rows (all of them, those in ``files``, and only ``ids`` if given); ``columns``
    defaults to the metrics. Reads ``OUTPUT_SCHEMA`` from any task's output (pass the task's
    ``Task.schema`` for its extra images)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    files = committed_files(storage) if files is None else files
    columns = METRIC_COLUMNS if columns is None else columns
    if not files:
        return schema.empty_table().select(columns)
    dataset = pads.dataset(files, schema=schema, format="parquet", filesystem=storage.arrow_fs)
    where = None if ids is None else pc.field("id").isin(pa.array(list(ids), pa.string()))
    return dataset.to_table(columns=columns, filter=where)


def claim(storage: Storage, run_id: str, lease_s: float = leases.LEASE_S) -> list[str]:
    """Make ``run_id`` the only run allowed to commit (:func:`pipeline.leases.acquire`: raises
    :class:`~pipeline.leases.LeaseHeld` while another run is live), clear stale staging files, and
    return the files already committed (their ids are done). Nothing renews the lease: see :func:`hold`."""
    leases.acquire(storage, run_id, lease_s)
    return _committed_after_claim(storage)


@contextlib.contextmanager
def hold(storage: Storage, run_id: str) -> Iterator[tuple[leases.Holding, list[str]]]:
    """:func:`claim` for the duration of the block, the lease renewed in the background and released
    at the end (:func:`pipeline.leases.held`); yields the holding and the files already committed."""
    with leases.held(storage, run_id) as holding:
        yield holding, _committed_after_claim(storage)


def hand_over(holding: leases.Holding, run_id: str) -> list[str]:
    """Move a held output to the driver's next attempt ``run_id`` (the previous attempt's writes
    still in flight then commit nothing); returns the files committed by then."""
    holding.hand_over(run_id)
    return committed_files(holding.storage)  # staging stays: the lease's own renewals write there


def _committed_after_claim(storage: Storage) -> list[str]:
    fs = storage.fs
    if storage.protocol == "file" and fs.exists(storage.path("_fcs", "tmp")):
        fs.rm(storage.path("_fcs", "tmp"), recursive=True)  # what a killed run's writes left half-done
    return committed_files(storage)


def drop_errors(storage: Storage, files: list[str], kinds: tuple[str, ...]) -> tuple[list[str], int]:
    """Remove the error rows whose ``error_kind`` is in ``kinds`` from the committed ``files``, so a
    rerun processes their ids again; returns the committed files afterwards and the rows removed.

    A file is replaced in place (same name, atomically, every other column and row kept) or deleted
    when nothing is left: at any moment every other row is in exactly one file, and a crash part-way
    leaves some error rows removed (their ids pending for the next run) and the rest still committed.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from pipeline.errors import error_kind

    if not files or not kinds:
        return files, 0
    dataset = pads.dataset(files, schema=OUTPUT_SCHEMA, format="parquet", filesystem=storage.arrow_fs)
    by_file: dict[str, list[str]] = {}
    for fragment in dataset.get_fragments(filter=None):
        errors = fragment.to_table(columns=["id", "error"], filter=pc.field("status") == "error", schema=OUTPUT_SCHEMA)
        for row in errors.to_pylist():
            if error_kind(row["error"]) in kinds:  # the kind follows from the stage (also in older outputs)
                by_file.setdefault(fragment.path, []).append(row["id"])
    for path, ids in by_file.items():
        table = pq.read_table(path, filesystem=storage.arrow_fs)
        kept = table.filter(pc.invert(pc.is_in(table.column("id"), value_set=pa.array(ids, pa.string()))))
        if kept.num_rows:
            buffer = io.BytesIO()
            pq.write_table(kept, buffer, compression="zstd")
            storage.put_atomic(path, buffer.getvalue())  # same name: a later commit never collides with it
        else:
            storage.fs.rm_file(path)
    return committed_files(storage), sum(map(len, by_file.values()))


class ParquetCommitSink(Datasink):
    """Ray Data datasink: each write task commits its rows (cast to ``schema``) as one atomic Parquet
    file; Ray Data gathers at least ``rows_per_file`` rows per write (fewer in the last one)."""

    def __init__(self, storage: Storage, run_id: str, schema: pa.Schema = OUTPUT_SCHEMA,
                 rows_per_file: int = ROWS_PER_FILE) -> None:
        self.storage, self.run_id, self.schema, self.rows_per_file = storage, run_id, schema, rows_per_file

    def get_name(self) -> str:
        return "WriteCommittedParquet"

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks, ctx) -> list[dict]:
        tables = [BlockAccessor.for_block(b).to_arrow().cast(self.schema) for b in blocks]
        tables = [t for t in tables if t.num_rows]
        return [commit(self.storage, self.run_id, pa.concat_tables(tables))] if tables else []


def commit(storage: Storage, run_id: str, table: pa.Table) -> dict:
    """Publish ``table`` as one committed file if ``run_id`` still holds the output
    (:func:`pipeline.leases.check`, else RuntimeError and nothing is written)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    leases.check(storage, run_id)  # last, so that the upload lands soon after it (leases.COMMIT_WINDOW_S)
    name = part_name(table.column("id").to_pylist())
    storage.put_atomic(storage.path(name), buffer.getvalue())
    return {"file": name, "rows": table.num_rows}


def write_summary(storage: Storage, summary: dict) -> str:
    path = storage.path("_summary.json")
    storage.put_atomic(path, json.dumps(summary, indent=2, default=str).encode())
    return storage.uri(path)
