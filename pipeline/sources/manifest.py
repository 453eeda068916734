"""Manifest input: a table of object URIs, so a bucket of millions of images is never listed.

A manifest is a Parquet or CSV file (or a folder/prefix of them) with ``id`` (unique), ``image_uri``,
``mask_uri`` (for the tasks that take a mask) and optional ``prompt`` / ``seed``; any other column is
metadata. URIs are ``s3://``, ``gs://``, ``file://`` or paths relative to the manifest's folder (for a
folder of manifests, that input folder, also for manifests in its subfolders), all on one filesystem
(one protocol; for S3 the job's endpoint). The objects are fetched in the read stage, per row,
through :func:`pipeline.stages.prepare` like a folder's files: a missing or unreadable object is
that row's ``read:`` error. Discovery loads the whole table on the driver (the ids are needed there)
and the read stage ships it in blocks, so a manifest costs about its own size in memory.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.sources.base import Inputs, Source
from pipeline.sources.common import Listing, is_hidden, read_listing, unique_ids
from pipeline.storage import Storage

URI_COLUMNS = {"image": "image_uri", "mask": "mask_uri"}  # what the manifest names, per object
PROTOCOLS = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "file": "file"}  # scheme -> Storage protocol
_SCHEME = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"


def _tables(storage: Storage) -> list[str]:
    if not storage.fs.isdir(storage.root):
        return [storage.root]
    return [p for p in storage.list_files("**/*") if p.endswith((".parquet", ".csv"))
            and not is_hidden(storage.relative(p))]


class ManifestSource(Source):
    name = "manifest"
    about = "a .csv or .parquet table of id, image_uri (+ mask_uri), objects fetched per row"

    def detect(self, storage: Storage) -> bool:
        """A ``.csv`` file, or Parquet whose first table has ``image_uri`` and no ``image`` column."""
        if storage.root.endswith(".csv"):
            return True
        if not storage.fs.exists(storage.root):
            return False
        files = [p for p in _tables(storage) if p.endswith(".parquet")]
        if not files:
            return any(p.endswith(".csv") for p in _tables(storage))
        import pyarrow.parquet as pq

        names = pq.read_schema(files[0], filesystem=storage.arrow_fs).names
        return "image_uri" in names and "image" not in names

    def discover(self, storage: Storage, *, mask: bool, options: dict, s3_endpoint: str | None) -> Inputs:
        """The manifest's rows as a listing (its columns, plus ``image_path`` / ``mask_path`` and the reason a
        URI is absent). Fails fast (ValueError) on a missing manifest, a missing ``id`` / ``image_uri`` (or
        ``mask_uri`` when ``mask``) column, null or duplicate ids, or URIs on several filesystems."""
        files, table = _read_manifest(storage)
        required = ["id", URI_COLUMNS["image"]] + ([URI_COLUMNS["mask"]] if mask else [])
        missing = [c for c in required if c not in table.column_names]
        if missing:
            raise ValueError(f"manifest lacks column(s) {', '.join(missing)} (found {', '.join(table.column_names)}); "
                             "required: id, image_uri" + (", mask_uri" if mask else "") + "; optional: prompt, seed")
        table = table.set_column(table.schema.get_field_index("id"), "id", table.column("id").cast(pa.string()))
        blank = int(pc.sum(pc.fill_null(pc.equal(table.column("id"), ""), True)).as_py() or 0)
        if blank:
            raise ValueError(f"manifest has {blank} row(s) with a null or empty id; every row needs one")
        ids = unique_ids(table.column("id").combine_chunks())
        listing = _with_paths(table)
        base = Storage(storage.protocol, posixpath.dirname(storage.root) if len(files) == 1 and files[0] == storage.root
                       else storage.root, storage.endpoint)
        uris = pa.concat_arrays([listing.column(f"{name}_path").combine_chunks() for name in URI_COLUMNS])
        objects = object_storage(base, pc.drop_null(uris), s3_endpoint)
        return Inputs(self.name, objects, ids, table.schema, Listing(listing, files))

    def read(self, inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None):
        return read_listing(inputs, done, block_rows=block_rows, limit=limit)


def _read_manifest(storage: Storage) -> tuple[list[str], pa.Table]:
    """The manifest files and their rows as one table."""
    if not storage.fs.exists(storage.root):
        raise ValueError(f"input {storage.uri()!r} does not exist")
    files = _tables(storage)
    if not files:
        raise ValueError(f"input {storage.uri()!r} holds no .parquet or .csv manifest")
    try:
        return files, pa.concat_tables([read_table(storage, f) for f in files], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"manifest {storage.uri()!r} cannot be read as one table: {exc}") from None


def _with_paths(table: pa.Table) -> pa.Table:
    """``table`` plus ``image_path`` / ``mask_path`` (the URIs) and ``*_missing`` (why a URI is absent)."""
    for name, column in URI_COLUMNS.items():
        uris = table.column(column).cast(pa.string()) if column in table.column_names else pa.nulls(len(table),
                                                                                                   pa.string())
        absent = pc.or_kleene(pc.is_null(uris), pc.equal(uris, ""))
        table = table.append_column(f"{name}_path", uris).append_column(
            f"{name}_missing", pc.if_else(absent, pa.scalar(f"no {column}"), pa.scalar(None, pa.string())))
    return table


def read_table(storage: Storage, path: str) -> pa.Table:
    """One manifest file; in CSV, ``id`` and the URI and prompt columns are strings whatever they look like."""
    if path.endswith(".csv"):
        import pyarrow.csv as pacsv

        strings = {name: pa.string() for name in ("id", "prompt", *URI_COLUMNS.values())}
        with storage.fs.open(path, "rb") as f:
            return pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(column_types=strings))
    import pyarrow.parquet as pq

    return pq.read_table(path, filesystem=storage.arrow_fs)


def object_storage(base: Storage, uris: pa.Array, s3_endpoint: str | None = None) -> Storage:
    """Where the objects live: ``base`` (the manifest's folder; relative paths resolve against it) when
    the URIs share its protocol, else the one other protocol they all use. ValueError on several."""
    uris = uris.filter(pc.not_equal(uris, ""))
    has_scheme = pc.match_substring_regex(uris, _SCHEME)
    with_scheme = uris.filter(has_scheme)
    found = {s.lower() for s in pc.unique(pc.extract_regex(with_scheme, _SCHEME).field("scheme")).to_pylist()}
    unknown = sorted(found - set(PROTOCOLS))
    if unknown:
        raise ValueError(f"manifest URIs use {', '.join(s + '://' for s in unknown)}; supported: s3://, gs://, "
                         "file:// or paths relative to the manifest (download web URLs first, e.g. with img2dataset)")
    protocols = {PROTOCOLS[s] for s in found}
    if len(with_scheme) < len(uris) or not protocols:  # relative paths: on the manifest's filesystem
        protocols.add(base.protocol)
    if len(protocols) > 1:
        raise ValueError(f"manifest URIs span several filesystems ({', '.join(sorted(protocols))}; paths without a "
                         f"scheme are relative to the manifest on {base.protocol}); keep every object on one")
    (protocol,) = protocols
    if protocol == base.protocol:
        return base
    first = with_scheme[0].as_py()
    return Storage.from_uri(f"{first.split('://', 1)[0]}://{first.split('://', 1)[1].split('/', 1)[0]}"
                            if protocol != "file" else "/", s3_endpoint)
