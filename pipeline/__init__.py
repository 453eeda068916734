"""The distributed pipeline: Ray Data from object storage to Parquet, one resident model per actor.

Public API:
    JobConfig                 job settings (validated on construction)
    run                       run a job to completion, resuming committed work; returns the summary
    apply                     the job's stages on a user's own ray.data.Dataset (output columns added)
    TASKS                     the task registry (restore, superres, style, layers, outpaint)
    TaskActor                 the GPU stage (a callable class, usable without Ray)
    Storage                   a URI with its explicit fsspec and pyarrow filesystems
    OUTPUT_SCHEMA             the output data contract (a task may add image columns: ``Task.schema``)
"""

from pipeline.actor import TaskActor
from pipeline.config import JobConfig
from pipeline.embed import apply
from pipeline.graph import run
from pipeline.schema import OUTPUT_SCHEMA
from pipeline.storage import Storage
from pipeline.tasks import TASKS

__all__ = ["OUTPUT_SCHEMA", "TASKS", "JobConfig", "Storage", "TaskActor", "apply", "run"]
