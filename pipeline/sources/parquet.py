"""Parquet input: shards with ``id`` (string, unique), ``image`` (bytes, or the Hugging Face
struct{bytes, path}), ``mask`` (bytes or struct, white = regenerate; only for the tasks that take one)
and optional ``prompt`` / ``seed`` / metadata columns. A file, or a folder/prefix of ``.parquet`` files
(hidden ones, ``_*`` and ``.*``, skipped). Input format auto reads anything no other format claims as
Parquet, so this format's errors also say what the other formats expect."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.sources.base import Inputs, Source
from pipeline.sources.common import Shards, drop_done, is_hidden, pending_shards, unique_ids
from pipeline.storage import Storage


class ParquetSource(Source):
    name = "parquet"
    about = "Parquet shards with id, image (+ mask) columns"

    def detect(self, storage: Storage) -> bool:
        return True  # the fallback: last in the detection order

    def discover(self, storage: Storage, *, mask: bool, options: dict, s3_endpoint: str | None) -> Inputs:
        fs = storage.fs
        if not fs.exists(storage.root):
            raise ValueError(f"input {storage.uri()!r} does not exist")
        files = [storage.root] if not fs.isdir(storage.root) else [
            p for p in storage.list_files("**/*.parquet") if not is_hidden(storage.relative(p))
        ]
        if not files:
            raise ValueError(
                f"input {storage.uri()!r} has no .parquet shards and no images/ folder; expected Parquet "
                "shards with id, image, mask columns, images/<id>.png + masks/<id>.png, WebDataset .tar shards or a "
                "manifest (.csv or .parquet with id, image_uri)"
            )
        return _discover_shards(storage, files, ("id", "image", "mask") if mask else ("id", "image"))

    def read(self, inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None):
        """Untouched shards read whole; each partly done shard by one task holding its own done ids."""
        import ray

        untouched, partial = pending_shards(inputs, done)
        parts = []
        if untouched:
            parts.append(ray.data.read_parquet(untouched, filesystem=inputs.storage.arrow_fs, partitioning=None))
        if partial:
            shards = ray.data.from_items([{"file": f, "done": d} for f, d in partial], override_num_blocks=len(partial))
            parts.append(shards.map_batches(read_pending, batch_size=1, batch_format="pyarrow",
                                            fn_kwargs={"storage": inputs.storage}))
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        return ds.limit(limit) if limit is not None else ds


def _discover_shards(storage: Storage, files: list[str], required: tuple[str, ...]) -> Inputs:
    import pyarrow.dataset as pads

    dataset = pads.dataset(files, format="parquet", filesystem=storage.arrow_fs)
    schema = _unified_schema(dataset)
    dataset = dataset.replace_schema(schema)  # every shard's columns, not only the first file's
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise ValueError(
            f"input shards lack column(s) {', '.join(missing)} (found {', '.join(schema.names)}); "
            "required: id (string), image (bytes or struct{bytes, path})"
            + (", mask (bytes, white = regenerate)" if "mask" in required else "")
        )
    index = {path: i for i, path in enumerate(files)}
    batches, file_of_batch = [], []
    for tagged in dataset.scanner(columns=["id"]).scan_batches():  # parallel reads, each batch tagged with its shard
        batches.append(tagged.record_batch.column(0))
        file_of_batch.append(index[tagged.fragment.path])
    ids = pa.chunked_array(batches, dataset.schema.field("id").type).combine_chunks()
    if ids.null_count:
        raise ValueError(f"input has {ids.null_count} row(s) with a null id; every row needs a unique string id")
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type) or pa.types.is_integer(ids.type)):
        raise ValueError(f"input column id has type {ids.type}; use strings (or integers), which map to one id each")
    shard_of_id = np.repeat(np.array(file_of_batch, dtype=np.int32), [len(b) for b in batches])
    rows = np.bincount(shard_of_id, minlength=len(files))
    renumber = np.cumsum(rows > 0, dtype=np.int32) - 1  # empty shards have nothing to read: dropped
    files = [f for f, n in zip(files, rows, strict=True) if n]
    return Inputs(ParquetSource.name, storage, unique_ids(ids.cast(pa.string())), schema,
                  Shards(files, pa.array(renumber[shard_of_id])))


def _unified_schema(dataset) -> pa.Schema:
    """The columns of all shards together (a column only some shards have is null in the others)."""
    try:
        return pa.unify_schemas([f.physical_schema for f in dataset.get_fragments()], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"input shards disagree on a column's type ({exc}); write them with one schema") from None


def read_pending(batch: pa.Table, storage: Storage) -> pa.Table:
    """The rows of one partly done shard (``batch``: one row of file, done ids) whose ids are not done."""
    import pyarrow.parquet as pq

    path, done = batch.column("file")[0].as_py(), batch.column("done")[0].values
    return drop_done(pq.read_table(path, filesystem=storage.arrow_fs, partitioning=None), done)
