"""The distributed pipeline: Ray Data from object storage to Parquet, one resident model per actor.

Public API:
    JobConfig                 job settings (validated on construction)
    run                       run a job to completion, resuming committed work; returns the summary
    Sampler                   the GPU stage (a callable class, usable without Ray)
    Storage                   a URI with its explicit fsspec and pyarrow filesystems
    OUTPUT_SCHEMA             the output data contract
"""

from pipeline.actor import Sampler
from pipeline.config import JobConfig
from pipeline.graph import run
from pipeline.output import OUTPUT_SCHEMA
from pipeline.storage import Storage

__all__ = ["OUTPUT_SCHEMA", "JobConfig", "Sampler", "Storage", "run"]
