"""The input format registry: format name -> :class:`pipeline.sources.base.Source`.

Adding a format is one file (a ``Source`` subclass: detect, discover, read, options) and one entry in
``FORMATS`` (and in ``DETECTION_ORDER`` when input_format auto should recognise it); the job config,
the CLI and the graph read everything else from here.
"""

from __future__ import annotations

import pyarrow as pa

from fcs.settings import Setting
from pipeline.sources.base import Inputs, Source
from pipeline.sources.folder import FolderSource
from pipeline.sources.manifest import ManifestSource
from pipeline.sources.parquet import ParquetSource
from pipeline.sources.webdataset import WebDatasetSource
from pipeline.storage import Storage

FORMATS: dict[str, Source] = {s.name: s for s in (ParquetSource(), FolderSource(), WebDatasetSource(),
                                                     ManifestSource())}
# input_format auto: the first format whose detect() says yes. Parquet, last, takes what no other claims.
DETECTION_ORDER = ("folder", "webdataset", "manifest", "parquet")
AUTO = "auto"
INPUT_FORMATS = (AUTO, *FORMATS)


def input_options(input_format: str) -> tuple[Setting, ...]:
    """The options a job of ``input_format`` may set: the format's own; for auto every format's."""
    sources = FORMATS.values() if input_format == AUTO else [_source(input_format)]
    return tuple({o.name: o for s in sources for o in s.options}.values())


def check_input_options(input_format: str, values: dict | None) -> dict:
    """``values`` (the job's ``input_options``) with defaults filled in, normalised and checked.
    ValueError naming ``input_options.<name>`` for an option the format does not have (with the
    allowed ones) or a bad value. For auto: any format's option, each checked by its format."""
    values = dict(values or {})
    allowed = [o.name for o in input_options(input_format)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"config field 'input_options.{unknown[0]}': not an option of input format {input_format!r} "
                         f"(allowed: {', '.join(allowed) or 'none'})")
    sources = FORMATS.values() if input_format == AUTO else [_source(input_format)]
    out = {}
    for source in sources:
        out.update(source.check_options({o.name: values[o.name] for o in source.options if o.name in values}))
    return out


def detect(storage: Storage) -> Source:
    """The source of input_format auto: the first in ``DETECTION_ORDER`` that recognises ``storage``."""
    for name in DETECTION_ORDER:
        if FORMATS[name].detect(storage):
            return FORMATS[name]
    raise ValueError(f"input {storage.uri()!r} matches no input format ({', '.join(DETECTION_ORDER)}); "
                     f"set input_format to one of {', '.join(FORMATS)}")


def discover(storage: Storage, mask: bool = True, input_format: str = AUTO, options: dict | None = None,
             s3_endpoint: str | None = None) -> Inputs:
    """Find the input items on the driver, reading only ids (and the input columns). ``input_format``:
    a name in ``FORMATS``, or auto (:func:`detect`); ``mask``: the task needs a mask; ``options``: the
    job's input options (:func:`check_input_options`; the chosen format takes its own);
    ``s3_endpoint``: for objects the input names elsewhere. Fails fast (ValueError) on a missing
    location, no items, null or duplicate ids, or inputs without ``id``/``image`` (and ``mask`` when
    ``mask``)."""
    values = check_input_options(input_format, options)
    source = detect(storage) if input_format == AUTO else _source(input_format)
    own = {o.name: values[o.name] for o in source.options}
    return source.discover(storage, mask=mask, options=own, s3_endpoint=s3_endpoint)


def read(inputs: Inputs, done: pa.Array, block_rows: int, limit: int | None = None):
    """A Ray Dataset of the pending raw rows (ids in ``done`` are skipped; at most ``limit``), in blocks
    of at most ``block_rows`` rows, read by the format that discovered them."""
    ds = _source(inputs.kind).read(inputs, done, block_rows=block_rows, limit=limit)
    return ds.repartition(target_num_rows_per_block=block_rows, strict=True)


def _source(name: str) -> Source:
    if name not in FORMATS:
        raise ValueError(f"input_format {name!r} is not a registered input format; expected one of "
                         f"{', '.join(INPUT_FORMATS)}")
    return FORMATS[name]
