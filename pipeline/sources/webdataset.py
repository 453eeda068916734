"""WebDataset input: tar shards in the img2dataset layout, one sample per key.

A shard holds members ``<key>.<suffix>`` (``00042.jpg``, ``00042.json``, ``00042.txt``, and for the
tasks that take a mask ``00042.mask.png``); the key is everything before the first dot of the file
name (with its folder inside the tar), the suffix everything after it, as Ray's WebDataset reader
splits them. The key is the item's id. Shards are named by a brace pattern
(``s3://b/shards/{00000..00099}.tar``), a single ``.tar`` or a folder/prefix holding ``.tar`` files.

Rows read from a shard: ``id`` (the key), ``image`` (bytes of the first member among
``image_suffixes``), ``mask`` (bytes of the ``mask_suffix`` member), ``prompt`` (text of the
``prompt_suffix`` member, when one is chosen) and one column per other suffix found in the shards,
named by the suffix: UTF-8 text (``TEXT_SUFFIXES``, e.g. the ``json`` and ``txt`` of img2dataset, kept
as strings, so the JSON is carried losslessly as one string) or bytes. Discovery reads every shard's
member names (tar headers) on the driver, to know the ids before any work: on a local disk it reads
512 bytes per member; on object storage, where a seek is a new ranged request, it streams each shard
once (shards are read concurrently).
"""

from __future__ import annotations

import logging
import posixpath
import re
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fcs.settings import Setting, fail
from pipeline.sources.base import INPUT_OPTIONS, Inputs, Source
from pipeline.sources.common import Shards, drop_done, is_hidden, pending_shards, unique_ids
from pipeline.storage import Storage

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")  # img2dataset writes jpg (or png/webp by encode_format)
DEFAULT_MASK_SUFFIX = "mask.png"  # <key>.mask.png: white = regenerate (restore) / object region (layers)
TEXT_SUFFIXES = ("txt", "text", "json")  # members kept as UTF-8 strings; any other suffix is kept as bytes
RESERVED = ("id", "image", "mask", "prompt")  # column names a member suffix may not take
LISTING_THREADS = 16


@dataclass(frozen=True)
class Suffixes:
    """Which members of a sample are its image, its mask and (optionally) its prompt."""

    image: tuple[str, ...] = DEFAULT_IMAGE_SUFFIXES
    mask: str = DEFAULT_MASK_SUFFIX
    prompt: str | None = None

    @classmethod
    def from_options(cls, options: dict) -> Suffixes:
        """From the source's checked options (:attr:`WebDatasetSource.options`)."""
        return cls(options["image_suffixes"], options["mask_suffix"], options["prompt_suffix"])


@dataclass
class TarShards(Shards):
    """The WebDataset ``Inputs.data``: the shards, each id's shard, and the members to use."""

    suffixes: Suffixes


def normalize_suffixes(values: Sequence[str] | str) -> tuple[str, ...]:
    """Suffixes as given in a job (a list or one string), without leading dots."""
    values = [values] if isinstance(values, str) else list(values)
    return tuple(str(v).lstrip(".") for v in values)


def _suffix_list(value: Any) -> Any:
    """One string or a list of strings -> a tuple without leading dots; anything else as it came (the
    check names it)."""
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
        return normalize_suffixes(value)
    return value


def _suffix(value: Any) -> Any:
    return normalize_suffixes(value)[0] if isinstance(value, str) else value


def _is_suffix(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip("."))


OPTIONS = (
    Setting("image_suffixes", DEFAULT_IMAGE_SUFFIXES, "WebDataset: image members, the first present wins",
            lambda v: None if isinstance(v, tuple) and v and all(map(_is_suffix, v))
            else "a non-empty list of member suffixes, e.g. [jpg, png]",
            cli={"nargs": "+", "metavar": "SUFFIX"}, normalize=_suffix_list),
    Setting("mask_suffix", DEFAULT_MASK_SUFFIX, "WebDataset: the mask member",
            lambda v: None if _is_suffix(v) else "a member suffix, e.g. mask.png", normalize=_suffix),
    Setting("prompt_suffix", None, "WebDataset: the member used as the prompt, e.g. txt (none: no prompt from "
            "the shards)", lambda v: None if v is None or _is_suffix(v) else "a member suffix, e.g. txt, or null",
            normalize=_suffix),
)


class WebDatasetSource(Source):
    name = "webdataset"
    about = "WebDataset .tar shards (img2dataset layout), one sample per key"
    options = OPTIONS

    def detect(self, storage: Storage) -> bool:
        """A brace pattern, a ``.tar`` file or a folder with ``.tar`` files."""
        if "{" in storage.root or storage.root.endswith(".tar"):
            return True
        return storage.fs.isdir(storage.root) and bool(_tars_in(storage))

    def check_options(self, values: dict) -> dict:
        out = super().check_options(values)
        if out["mask_suffix"] in out["image_suffixes"]:
            fail(INPUT_OPTIONS + "mask_suffix", out["mask_suffix"],
                 f"a suffix other than the image's: {', '.join(out['image_suffixes'])}")
        return out

    def discover(self, storage: Storage, *, mask: bool, options: dict, s3_endpoint: str | None) -> Inputs:
        """Shards, ids (sample keys) and input columns, read from the tar headers. Fails fast (ValueError) on
        a missing shard, an unreadable tar, a key in two shards (ids must be unique), or a member suffix named
        like a column we make (``RESERVED``)."""
        suffixes = Suffixes.from_options(options)
        paths = shard_paths(storage)
        with ThreadPoolExecutor(min(LISTING_THREADS, len(paths))) as pool:
            listed = list(pool.map(lambda p: _members(storage, p), paths))
        keys, shard_of_key, found = _samples(listed)
        if not keys:
            raise ValueError(f"the {len(paths)} shard(s) of {storage.uri()!r} hold no samples (<key>.<suffix> members)")
        schema = _schema(found, suffixes)
        ids = unique_ids(pa.array(keys, pa.string()))
        log.info("webdataset: %d shard(s), %d sample(s), member suffixes %s", len(paths), len(ids), sorted(found))
        return Inputs(self.name, storage, ids, schema, TarShards(paths, pa.array(shard_of_key, pa.int32()), suffixes))

    def read(self, inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None):
        """Ray's reader over the shards not all done; rows are checked against the partly done shards'
        done ids only."""
        untouched, partial = pending_shards(inputs, done)
        ds = read_shards(inputs, sorted(untouched + [f for f, _ in partial]))
        if partial:
            done = pa.array([i for _, ids in partial for i in ids], pa.string())
            ds = ds.map_batches(drop_done, batch_format="pyarrow", fn_kwargs={"done": done})
        return ds.limit(limit) if limit is not None else ds


def _tars_in(storage: Storage) -> list[str]:
    return [p for p in storage.list_files("**/*.tar") if not is_hidden(storage.relative(p))]


def expand_braces(pattern: str) -> list[str]:
    """``a/{00..02}.tar`` -> a/00.tar, a/01.tar, a/02.tar (zero-padded to the first bound's width);
    ``{x,y}`` alternatives; several braces multiply. Raises ValueError on a malformed brace."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        if "{" in pattern or "}" in pattern:
            raise ValueError(f"input {pattern!r} has an unbalanced brace; expected e.g. shards/{{00000..00099}}.tar")
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        low, high = numeric.groups()
        if int(low) > int(high):
            raise ValueError(f"input {pattern!r}: brace range {{{body}}} runs backwards; write {{{high}..{low}}}")
        choices = [str(i).zfill(len(low)) for i in range(int(low), int(high) + 1)]
    elif "," in body:
        choices = body.split(",")
    else:
        raise ValueError(f"input {pattern!r}: brace {{{body}}} is neither a range {{00000..00099}} nor a list {{a,b}}")
    return [path for choice in choices for path in expand_braces(head + choice + tail)]


def split_member(name: str) -> tuple[str, str] | None:
    """(key, suffix) of a tar member, as Ray's reader groups them (``a/b.mask.png`` -> ``a/b``, ``mask.png``);
    None for a name without a dot in its file name, and for hidden members (a file or folder name
    starting with a dot: ``.DS_Store``, macOS ``._a.png``), which :func:`read` keeps from Ray's reader too."""
    if any(part.startswith(".") for part in name.split("/")):
        return None
    folder, base = posixpath.split(name)
    stem, dot, suffix = base.partition(".")
    if not stem or not dot:
        return None
    return (f"{folder}/{stem}" if folder else stem), suffix


def is_sample_member(name: str) -> bool:
    """Ray's ``fileselect``: the members :func:`split_member` gives a key (Ray would make ``x/.DS_Store``
    a sample ``x/``)."""
    return split_member(name) is not None


def shard_paths(storage: Storage) -> list[str]:
    """The shard paths (filesystem form) named by ``storage``; ValueError when one is missing or none is found."""
    if "{" in storage.root or "}" in storage.root:
        paths = expand_braces(storage.root)
        missing = [p for p in paths if not storage.fs.exists(p)]
        if missing:
            raise ValueError(f"{len(missing)} of {len(paths)} shard(s) named by {storage.uri()!r} do not exist, "
                             f"e.g. {storage.uri(missing[0])!r}")
        return paths
    if not storage.fs.exists(storage.root):
        raise ValueError(f"input {storage.uri()!r} does not exist")
    paths = _tars_in(storage) if storage.fs.isdir(storage.root) else [storage.root]
    if not paths:
        raise ValueError(f"input {storage.uri()!r} holds no .tar shards")
    return paths


def _members(storage: Storage, path: str) -> list[tuple[str, str]]:
    """(key, suffix) of every regular member of one shard, in order; ValueError naming the shard when it
    is not a readable tar, or breaks the WebDataset rules Ray's reader enforces (a key's members together,
    no member twice)."""
    try:
        with storage.fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:*") as tar:
            names = [m.name for m in tar if m.isreg()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"shard {storage.uri(path)!r} is not a readable tar: {type(exc).__name__}: {exc}") from None
    members, finished, current, seen = [], set(), None, set()
    for name in names:
        split = split_member(name)
        if split is None:
            continue
        key, suffix = split
        if key != current:
            if key in finished:
                raise ValueError(f"shard {storage.uri(path)!r}: the members of key {key!r} are not together; "
                                 "rewrite the tar sorted by name (tar --sort=name)")
            if current is not None:
                finished.add(current)
            current = key
        if (key, suffix) in seen:
            raise ValueError(f"shard {storage.uri(path)!r} holds {key}.{suffix} twice; keep one member per name")
        seen.add((key, suffix))
        members.append(split)
    return members


def _samples(listed: list[list[tuple[str, str]]]) -> tuple[list[str], list[int], set[str]]:
    """(every key in shard order, each key's shard, every member suffix) from the shards' members."""
    keys, shard_of_key, found = [], [], set()
    for shard, members in enumerate(listed):
        shard_keys = list(dict.fromkeys(key for key, _ in members))
        keys += shard_keys
        shard_of_key += [shard] * len(shard_keys)
        found.update(suffix for _, suffix in members)
    return keys, shard_of_key, found


def _schema(found: set[str], suffixes: Suffixes) -> pa.Schema:
    """The input columns: id, image, mask and one per other member suffix; ValueError when a suffix
    would take the name of a column we make (``RESERVED``)."""
    extra = sorted(found - set(suffixes.image) - {suffixes.mask})
    clash = [s for s in extra if s in RESERVED]
    if clash:
        raise ValueError(f"shard members with suffix(es) {', '.join(clash)} would make columns named like ours "
                         f"({', '.join(RESERVED)}); rename those members")
    return pa.schema([("id", pa.string()), ("image", pa.binary()), ("mask", pa.binary())]
                     + [(s, pa.string() if _is_text(s) else pa.binary()) for s in extra])


def _is_text(suffix: str) -> bool:
    return suffix.rsplit(".", 1)[-1].lower() in TEXT_SUFFIXES


def read_shards(inputs: Inputs, files: Sequence[str]):
    """A Ray Dataset of the samples of ``files`` (some of the shards) as rows (see the module
    docstring), unfiltered."""
    import ray

    ds = ray.data.read_webdataset(list(files), filesystem=inputs.storage.arrow_fs, decoder=None,
                                  fileselect=is_sample_member)
    return ds.map_batches(to_rows, batch_format="pyarrow",
                          fn_kwargs=dict(suffixes=inputs.data.suffixes, schema=inputs.schema))


def to_rows(batch: pa.Table, suffixes: Suffixes, schema: pa.Schema) -> pa.Table:
    """Ray's WebDataset rows (``__key__``, one column per member suffix, bytes or null) -> input rows of
    ``schema``, plus ``prompt`` when ``suffixes.prompt`` is set and ``image_missing`` / ``mask_missing``
    (why a member is absent, read by the ``read:`` error of that row)."""
    n = batch.num_rows

    def member(suffix: str) -> pa.Array:
        if suffix not in batch.column_names:
            return pa.nulls(n, pa.binary())
        return batch.column(suffix).combine_chunks().cast(pa.binary())

    ids = batch.column("__key__").combine_chunks().cast(pa.string())
    images = [member(s) for s in suffixes.image]
    image = pc.coalesce(*images) if len(images) > 1 else images[0]
    columns = {"id": ids, "image": image, "mask": member(suffixes.mask)}
    for field in schema:
        if field.name not in columns:
            raw = member(field.name)
            columns[field.name] = _text(raw) if pa.types.is_string(field.type) else raw
    if suffixes.prompt:
        columns["prompt"] = _text(member(suffixes.prompt))
    for name, wanted in (("image", "|".join(suffixes.image)), ("mask", suffixes.mask)):
        reason = pa.scalar(f"the sample has no .{wanted} member")  # no key in it: equal reasons group
        columns[f"{name}_missing"] = pc.if_else(pc.is_null(columns[name]), reason, pa.scalar(None, pa.string()))
    return pa.table(columns)


def _text(raw: pa.Array) -> pa.Array:
    """UTF-8 members as strings; a member that is not valid UTF-8 keeps its text with U+FFFD replacements."""
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([None if v is None else v.decode("utf-8", "replace") for v in raw.to_pylist()], pa.string())

