"""Input discovery and reading: Parquet shards, a folder of images and masks matched by file stem,
WebDataset tar shards (:mod:`pipeline.webdataset`) or a manifest of object URIs (:mod:`pipeline.manifest`).

Parquet shards hold ``id`` (string, unique), ``image`` (bytes, or the Hugging Face struct{bytes, path}),
``mask`` (bytes or struct, white = regenerate; only for the tasks that take one) and optional
``prompt`` / ``seed`` / task columns.
A folder holds ``images/<id>.<ext>`` and ``masks/<id>.<ext>``; ids are paths relative to ``images/``
without the extension, so nested folders work. A mask or image without its partner is still an
input id: it becomes an error row, never a silent drop.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.storage import Storage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
INPUT_FORMATS = ("auto", "parquet", "folder", "webdataset", "manifest")  # auto: see discover()
NOT_UTF8 = "its file name is not valid UTF-8; rename the file"  # folder input: the read error of such a file


@dataclass
class Inputs:
    """What a job reads. ``ids``: every input id (string array). ``files``: Parquet shards (parquet
    kind), tar shards (webdataset) or manifest tables (manifest); ``id_files``: the index in ``files``
    of each id's shard (parquet and webdataset kinds). ``listing``: id, image_path, mask_path per item (folder kind;
    manifest kind: with the manifest's columns). ``schema``: the input columns a user sees (their
    metadata may be carried to the output, :mod:`pipeline.carry`); None = unknown. ``suffixes``: the
    WebDataset members to use (webdataset kind)."""

    kind: str
    storage: Storage
    ids: pa.Array
    files: list[str]
    listing: pa.Table | None = None
    schema: pa.Schema | None = None
    suffixes: Any = None
    id_files: pa.Array | None = None


def discover(storage: Storage, mask: bool = True, input_format: str = "auto", suffixes: Any = None,
             s3_endpoint: str | None = None) -> Inputs:
    """Find the input items on the driver, reading only ids (and the input columns). Fails fast
    (ValueError) on a missing location, no items, null or duplicate ids, or inputs without ``id``/``image``
    (and ``mask`` when ``mask``: the task needs one).

    ``input_format`` auto: a folder with ``images/`` is a folder; tar shards (a brace pattern, a ``.tar``,
    or a folder/prefix holding ``.tar`` files; img2dataset's sibling ``.parquet`` metadata files are then
    ignored) a WebDataset; a ``.csv`` file, or Parquet with ``image_uri`` and no ``image`` column, a
    manifest; anything else Parquet shards. ``suffixes``: the WebDataset members
    (:class:`pipeline.webdataset.Suffixes`). ``s3_endpoint``: for the objects a manifest names.
    """
    from pipeline import manifest, webdataset

    fs = storage.fs
    if input_format in ("auto", "folder") and fs.isdir(storage.root) and fs.isdir(storage.path("images")):
        return _discover_folder(storage)
    if input_format == "folder":
        raise ValueError(f"input {storage.uri()!r} has no images/ folder; input_format folder expects "
                         "images/<id>.png (+ masks/<id>.png)")
    if input_format == "webdataset" or (input_format == "auto" and webdataset.is_webdataset(storage)):
        return webdataset.discover(storage, suffixes or webdataset.Suffixes())
    if input_format == "manifest" or (input_format == "auto" and manifest.is_manifest(storage)):
        return manifest.discover(storage, mask, s3_endpoint)
    if not fs.exists(storage.root):
        raise ValueError(f"input {storage.uri()!r} does not exist")
    files = [storage.root] if not fs.isdir(storage.root) else [
        p for p in storage.list_files("**/*.parquet") if not _hidden(storage.relative(p))
    ]
    if not files:
        raise ValueError(
            f"input {storage.uri()!r} has no .parquet shards and no images/ folder; expected Parquet "
            "shards with id, image, mask columns, images/<id>.png + masks/<id>.png, WebDataset .tar shards or a "
            "manifest (.csv or .parquet with id, image_uri)"
        )
    return _discover_parquet(storage, files, ("id", "image", "mask") if mask else ("id", "image"))


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def _discover_parquet(storage: Storage, files: list[str], required: tuple[str, ...]) -> Inputs:
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
    return Inputs("parquet", storage, _unique(ids.cast(pa.string())), files, schema=schema,
                  id_files=pa.array(renumber[shard_of_id]))


def _unified_schema(dataset) -> pa.Schema:
    """The columns of all shards together (a column only some shards have is null in the others)."""
    try:
        return pa.unify_schemas([f.physical_schema for f in dataset.get_fragments()], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"input shards disagree on a column's type ({exc}); write them with one schema") from None


def _discover_folder(storage: Storage) -> Inputs:
    def by_stem(folder: str) -> dict[str, str]:
        found: dict[str, list[str]] = {}
        for path in storage.list_files(f"{folder}/**"):
            rel = posixpath.relpath(path, storage.path(folder))
            stem, ext = posixpath.splitext(rel)
            if ext.lower() in IMAGE_EXTENSIONS and not _hidden(rel):
                key = _utf8_text(stem)  # a name that is not UTF-8 becomes an id with \x escapes and an error row
                found.setdefault(key, []).append(storage.relative(path) if key == stem else None)
        clashes = {k: v for k, v in found.items() if len(v) > 1}
        if clashes:
            stem, paths = next(iter(clashes.items()))
            raise ValueError(
                f"{len(clashes)} id(s) in {folder}/ match several files, e.g. {stem!r}: "
                f"{', '.join(posixpath.basename(p) for p in paths)}; keep one file per stem"
            )
        return {k: v[0] for k, v in found.items()}

    images = by_stem("images")
    masks = by_stem("masks") if storage.fs.isdir(storage.path("masks")) else {}
    ids = sorted(set(images) | set(masks))
    if not ids:
        raise ValueError(
            f"input {storage.uri()!r} has an images/ folder but no image files ({', '.join(IMAGE_EXTENSIONS)})")

    def unreadable(found: dict[str, str | None]) -> pa.Array:
        return pa.array([NOT_UTF8 if i in found and found[i] is None else None for i in ids], pa.string())

    listing = pa.table({
        "id": pa.array(ids, pa.string()),
        "image_path": pa.array([images.get(i) for i in ids], pa.string()),
        "mask_path": pa.array([masks.get(i) for i in ids], pa.string()),
        "image_missing": unreadable(images),
        "mask_missing": unreadable(masks),
    })
    return Inputs("folder", storage, listing.column("id").combine_chunks(), [], listing)


def _utf8_text(name: str) -> str:
    """``name`` as UTF-8 text: a local file name that is not UTF-8 (decoded by Python with
    surrogates) gets ``\\xNN`` escapes, which Arrow can store and a person can read."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _unique(ids: pa.Array) -> pa.Array:
    if pc.count_distinct(ids).as_py() != len(ids):
        dupes = [k for k, n in Counter(ids.to_pylist()).items() if n > 1]
        raise ValueError(
            f"input ids must be unique within a job; {len(dupes)} id(s) repeat, e.g. {', '.join(map(repr, dupes[:3]))}"
        )
    return ids


def read(inputs: Inputs, done: pa.Array, block_rows: int, limit: int | None = None):
    """A Ray Dataset of the pending raw rows (ids in ``done`` are skipped), in blocks of at most
    ``block_rows`` rows. Shards whose ids are all done are not read; only the done ids of shards
    partly done travel to the read tasks, so no task holds the whole done set."""
    import ray

    if inputs.listing is not None:  # folder, manifest
        listing = inputs.listing.filter(pc.invert(pc.is_in(inputs.listing.column("id"), value_set=done)))
        if limit is not None:
            listing = listing.slice(0, limit)
        chunks = [listing.slice(i, block_rows) for i in range(0, listing.num_rows, block_rows)]
        ds = ray.data.from_arrow(chunks or [listing])
    else:
        untouched, partial = split_shards(inputs, done)
        if not (untouched or partial):
            raise ValueError("every input id is done: nothing to read")
        ds = (_read_tars if inputs.kind == "webdataset" else _read_parquet)(inputs, untouched, partial)
        if limit is not None:
            ds = ds.limit(limit)
    return ds.repartition(target_num_rows_per_block=block_rows, strict=True)


def _read_parquet(inputs: Inputs, untouched: list[str], partial: list[tuple[str, list[str]]]):
    """Untouched shards read whole; each partly done shard by one task holding its own done ids."""
    import ray

    parts = []
    if untouched:
        parts.append(ray.data.read_parquet(untouched, filesystem=inputs.storage.arrow_fs, partitioning=None))
    if partial:
        shards = ray.data.from_items([{"file": f, "done": d} for f, d in partial], override_num_blocks=len(partial))
        parts.append(shards.map_batches(read_pending, batch_size=1, batch_format="pyarrow",
                                        fn_kwargs={"storage": inputs.storage}))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _read_tars(inputs: Inputs, untouched: list[str], partial: list[tuple[str, list[str]]]):
    """Ray's reader over the shards not all done; rows are checked against the partly done shards'
    done ids only."""
    from pipeline import webdataset

    ds = webdataset.read(inputs, sorted(untouched + [f for f, _ in partial]))
    if partial:
        done = pa.array([i for _, ids in partial for i in ids], pa.string())
        ds = ds.map_batches(drop_done, batch_format="pyarrow", fn_kwargs={"done": done})
    return ds


def split_shards(inputs: Inputs, done: pa.Array) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(shards with no id done, [(shard, its done ids)] for shards partly done); shards all done are
    in neither."""
    if not len(done):
        return list(inputs.files), []
    items = pa.table({"file": inputs.id_files, "id": inputs.ids, "done": pc.is_in(inputs.ids, value_set=done)})
    sizes = dict(zip(*items.group_by("file").aggregate([("id", "count")]).to_pydict().values(), strict=True))
    done_ids = items.filter(pc.field("done")).group_by("file").aggregate([("id", "list")]).to_pydict()
    done_by_file = dict(zip(done_ids["file"], done_ids["id_list"], strict=True))
    untouched = [inputs.files[i] for i in sizes if i not in done_by_file]
    partial = [(inputs.files[i], ids) for i, ids in done_by_file.items() if len(ids) < sizes[i]]
    return sorted(untouched), sorted(partial)


def read_pending(batch: pa.Table, storage: Storage) -> pa.Table:
    """The rows of one partly done shard (``batch``: one row of file, done ids) whose ids are not done."""
    import pyarrow.parquet as pq

    path, done = batch.column("file")[0].as_py(), batch.column("done")[0].values
    return drop_done(pq.read_table(path, filesystem=storage.arrow_fs, partitioning=None), done)


def drop_done(batch: pa.Table, done: pa.Array) -> pa.Table:
    """Rows whose id is not in ``done`` (on resume: the done ids of partly done shards only; shards all
    done are not read)."""
    return batch.filter(pc.invert(pc.is_in(batch.column("id").cast(pa.string()), value_set=done)))
