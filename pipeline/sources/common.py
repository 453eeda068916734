"""Helpers the input formats share: id checks, hidden paths, and the two ways a format is read
(shards with each id's shard known, or a listing of rows held on the driver)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.sources.base import Inputs


def unique_ids(ids: pa.Array) -> pa.Array:
    """``ids`` unchanged; ValueError naming a few repeats when an id occurs twice."""
    if pc.count_distinct(ids).as_py() != len(ids):
        dupes = [k for k, n in Counter(ids.to_pylist()).items() if n > 1]
        raise ValueError(
            f"input ids must be unique within a job; {len(dupes)} id(s) repeat, e.g. {', '.join(map(repr, dupes[:3]))}"
        )
    return ids


def is_hidden(relative: str) -> bool:
    """A path (relative to the input) with a part starting with ``_`` or ``.``: never an input file."""
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def drop_done(batch: pa.Table, done: pa.Array) -> pa.Table:
    """Rows whose id is not in ``done`` (on resume: the done ids of partly done shards only; shards all
    done are not read)."""
    return batch.filter(pc.invert(pc.is_in(batch.column("id").cast(pa.string()), value_set=done)))


# -- sharded formats ----------------------------------------------------------------------------
@dataclass
class Shards:
    """A sharded format's ``Inputs.data``: the shard paths and the index in ``files`` of each id's shard."""

    files: list[str]
    id_files: pa.Array


def split_shards(inputs: Inputs, done: pa.Array) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(shards with no id done, [(shard, its done ids)] for shards partly done); shards all done are
    in neither. ``inputs.data``: :class:`Shards`."""
    shards: Shards = inputs.data
    if not len(done):
        return list(shards.files), []
    items = pa.table({"file": shards.id_files, "id": inputs.ids, "done": pc.is_in(inputs.ids, value_set=done)})
    sizes = dict(zip(*items.group_by("file").aggregate([("id", "count")]).to_pydict().values(), strict=True))
    done_ids = items.filter(pc.field("done")).group_by("file").aggregate([("id", "list")]).to_pydict()
    done_by_file = dict(zip(done_ids["file"], done_ids["id_list"], strict=True))
    untouched = [shards.files[i] for i in sizes if i not in done_by_file]
    partial = [(shards.files[i], ids) for i, ids in done_by_file.items() if len(ids) < sizes[i]]
    return sorted(untouched), sorted(partial)


def pending_shards(inputs: Inputs, done: pa.Array) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """:func:`split_shards`; ValueError when no shard is left to read."""
    untouched, partial = split_shards(inputs, done)
    if not (untouched or partial):
        raise ValueError("every input id is done: nothing to read")
    return untouched, partial


# -- listed formats -----------------------------------------------------------------------------
@dataclass
class Listing:
    """A listed format's ``Inputs.data``: one raw row per item (id, ``*_path``, ``*_missing``, metadata),
    and the files it was read from (none for a folder)."""

    table: pa.Table
    files: list[str] = field(default_factory=list)


def read_listing(inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None):
    """The pending rows of ``inputs.data`` (:class:`Listing`) as a Ray Dataset in blocks of ``block_rows``."""
    import ray

    listing = drop_done(inputs.data.table, done)
    if limit is not None:
        listing = listing.slice(0, limit)
    chunks = [listing.slice(i, block_rows) for i in range(0, listing.num_rows, block_rows)]
    return ray.data.from_arrow(chunks or [listing])
