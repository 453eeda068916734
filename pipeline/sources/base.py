"""What an input format is: a :class:`Source` (detect, discover, read, options) and what its
discovery returns (:class:`Inputs`).

A source, like a Ray Data ``Datasource``, is one object per format: it recognises its inputs
(``detect``), lists their items on the driver before any work (``discover``: ids, input columns and
whatever it needs to read them later, its own ``data``), reads the pending items as a Ray Dataset of
raw rows (``read``) and declares its own options once (``options``). The registry
(:mod:`pipeline.sources.registry`) maps format names to sources; nothing else branches on a format.

Raw rows, what ``read`` yields and :func:`pipeline.stages.prepare` takes: ``id``; ``image`` (bytes or
struct{bytes, path}) or ``image_path`` (a path or URI on ``Inputs.storage``, fetched per row);
``mask`` / ``mask_path`` likewise for the tasks that take one; ``image_missing`` / ``mask_missing``
(why that object is absent, the row's ``read:`` error); optional ``prompt``, ``seed`` and metadata
columns (:mod:`pipeline.carry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from fcs.settings import Setting
from pipeline.storage import Storage

if TYPE_CHECKING:
    import ray.data

SOURCE_COLUMNS = ("image_path", "mask_path", "image_missing", "mask_missing")  # raw-row columns a source makes


@dataclass
class Inputs:
    """What a job reads, found on the driver.

    Attributes:
        kind: the format's name (a key of :data:`pipeline.sources.registry.FORMATS`).
        storage: where the rows' ``*_path`` objects are read from.
        ids: every input id (string array, unique).
        schema: the input columns a user sees (their metadata may be carried to the output,
            :mod:`pipeline.carry`); None = unknown.
        data: what this format's ``read`` needs (its own type: shards, a listing, ...).
    """

    kind: str
    storage: Storage
    ids: pa.Array
    schema: pa.Schema | None = None
    data: Any = None


INPUT_OPTIONS = "input_options."  # how a job config names a format's option: input_options.<name>


class Source(ABC):
    """One input format. Subclasses set ``name``, ``about`` and ``options`` and implement the three methods."""

    name: ClassVar[str]
    about: ClassVar[str]  # one line: what the format is (CLI help, docs)
    options: ClassVar[tuple[Setting, ...]] = ()

    @abstractmethod
    def detect(self, storage: Storage) -> bool:
        """Whether ``storage`` holds this format (input_format auto; cheap: a listing, a header)."""

    @abstractmethod
    def discover(self, storage: Storage, *, mask: bool, options: dict, s3_endpoint: str | None) -> Inputs:
        """The items on the driver. ``mask``: the task needs a mask; ``options``: this format's checked
        options; ``s3_endpoint``: for objects elsewhere than the input. Fails fast (ValueError saying what
        came in and what is expected) on a missing location, no items, null or duplicate ids, or
        missing columns."""

    @abstractmethod
    def read(self, inputs: Inputs, done: pa.Array, *, block_rows: int, limit: int | None) -> ray.data.Dataset:
        """A Ray Dataset of the raw rows (module docstring) of the items not in ``done``, at most
        ``limit`` of them; ``block_rows``: the rows per block the job will use."""

    def check_options(self, values: dict) -> dict:
        """``values`` with defaults filled in, normalised and checked; ValueError naming
        ``input_options.<name>`` for a bad value. Override to also check options against each other."""
        out = {opt.name: opt.validate(values.get(opt.name, opt.default), INPUT_OPTIONS) for opt in self.options}
        return out
