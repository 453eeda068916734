"""Input formats: Parquet shards, a folder of images and masks, WebDataset tar shards, a manifest of
object URIs; one :class:`~pipeline.sources.base.Source` per format, found through the registry
(:mod:`pipeline.sources.registry`).

    discover(storage, ...)      the items on the driver (ids, input columns) -> Inputs
    read(inputs, done, ...)     the pending items as a Ray Dataset of raw rows
    check_input_options(...)    a job's input options, checked by their format
"""

from pipeline.sources.base import SOURCE_COLUMNS, Inputs, Source
from pipeline.sources.common import split_shards
from pipeline.sources.registry import (
    AUTO,
    DETECTION_ORDER,
    FORMATS,
    INPUT_FORMATS,
    check_input_options,
    detect,
    discover,
    input_options,
    read,
)

__all__ = ["AUTO", "DETECTION_ORDER", "FORMATS", "INPUT_FORMATS", "SOURCE_COLUMNS", "Inputs", "Source",
           "check_input_options", "detect", "discover", "input_options", "read", "split_shards"]
