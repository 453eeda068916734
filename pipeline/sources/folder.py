"""Folder input: ``images/<id>.<ext>`` and ``masks/<id>.<ext>`` matched by file stem.

Ids are paths relative to ``images/`` (or ``masks/``) without the extension, so nested folders work.
A mask or image without its partner is still an input id: it becomes an error row, never a silent
drop. The files are fetched per row by the read stage (:func:`pipeline.stages.prepare`)."""

from __future__ import annotations

import posixpath

import pyarrow as pa

from pipeline.sources.base import Inputs, Source
from pipeline.sources.common import Listing, is_hidden, read_listing
from pipeline.storage import Storage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
NOT_UTF8 = "its file name is not valid UTF-8; rename the file"  # the read error of such a file


class FolderSource(Source):
    name = "folder"
    about = "a folder with images/<id>.png (+ masks/<id>.png), matched by file stem"

    def detect(self, storage: Storage) -> bool:
        return storage.fs.isdir(storage.root) and storage.fs.isdir(storage.path("images"))

    def discover(self, storage: Storage, *, mask: bool, options: dict, s3_endpoint: str | None) -> Inputs:
        if not self.detect(storage):
            raise ValueError(f"input {storage.uri()!r} has no images/ folder; input_format folder expects "
                             "images/<id>.png (+ masks/<id>.png)")
        images = _by_stem(storage, "images")
        masks = _by_stem(storage, "masks") if storage.fs.isdir(storage.path("masks")) else {}
        ids = sorted(set(images) | set(masks))
        if not ids:
            raise ValueError(
                f"input {storage.uri()!r} has an images/ folder but no image files ({', '.join(IMAGE_EXTENSIONS)})")
        listing = pa.table({
            "id": pa.array(ids, pa.string()),
            "image_path": pa.array([images.get(i) for i in ids], pa.string()),
            "mask_path": pa.array([masks.get(i) for i in ids], pa.string()),
            "image_missing": _why_missing(ids, images, "images"),
            "mask_missing": _why_missing(ids, masks, "masks"),
        })
        return Inputs(self.name, storage, listing.column("id").combine_chunks(), None, Listing(listing))

    def read(self, inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None):
        return read_listing(inputs, done, block_rows=block_rows, limit=limit)


def _by_stem(storage: Storage, folder: str) -> dict[str, str | None]:
    """id -> the file's path (None: its name is not UTF-8) for the image files under ``folder``."""
    found: dict[str, list[str | None]] = {}
    for path in storage.list_files(f"{folder}/**"):
        rel = posixpath.relpath(path, storage.path(folder))
        stem, ext = posixpath.splitext(rel)
        if ext.lower() in IMAGE_EXTENSIONS and not is_hidden(rel):
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


def _why_missing(ids: list[str], found: dict[str, str | None], folder: str) -> pa.Array:
    """Per id, why its file in ``folder`` cannot be read (null when it can)."""
    def why(i: str) -> str | None:
        if i not in found:
            return f"no file in {folder}/ has this id's stem"
        return NOT_UTF8 if found[i] is None else None
    return pa.array([why(i) for i in ids], pa.string())


def _utf8_text(name: str) -> str:
    """``name`` as UTF-8 text: a local file name that is not UTF-8 (decoded by Python with
    surrogates) gets ``\\xNN`` escapes, which Arrow can store and a person can read."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
