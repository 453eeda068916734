"""Our stages as one step of a user's own Ray Data pipeline: ``pipeline.apply(ds, cfg)``.

The CLI's graph (:func:`pipeline.graph.run_graph`) is read -> :func:`apply` -> commit; a user brings
their own read and their own sink.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pipeline import carry
from pipeline.actor import TaskActor
from pipeline.config import JobConfig
from pipeline.resources import Resources, plan_resources
from pipeline.storage import ENDPOINT_ENV, Storage
from pipeline.tasks import TASKS

if TYPE_CHECKING:
    import ray.data

MAX_BATCH_RETRIES = 3  # tries of a batch whose sampler actor died, before the job fails


def apply(ds: ray.data.Dataset, cfg: JobConfig, *, storage: Storage | None = None,
          resources: Resources | None = None, carried: pa.Schema | None = None,
          actor_cls: type = TaskActor, min_actors: int | None = None) -> ray.data.Dataset:
    """Run ``cfg``'s task over a Ray Dataset: prepare (read, decode, validate) -> the sampler actors ->
    encode (PNG), lazily, like any Ray Data transform.

    ``ds`` has ``id`` (string or integer), ``image`` (bytes, struct{bytes, path}, or an ``image_path``
    column of paths/URIs), ``mask`` for the tasks that take one (restore, layers), optional ``prompt``
    and ``seed``. The result has one row per input row: the task's output columns (``Task.schema``:
    ``status``, ``error``, ``image``, metrics; a bad row is ``status == "error"`` with a one-line
    ``error``, never an exception) followed by the input's other columns, unchanged (all of them, or
    ``cfg.keep_columns``; see :mod:`pipeline.carry`). Ids are not checked for uniqueness here (the
    CLI's discovery does it); ``cfg.input`` / ``cfg.output`` serve only as the root for relative paths
    and the name the output is recorded under; ``cfg.limit`` is not applied. The CPU stages take
    each block whole: give ``ds`` blocks of a few hundred rows (``ds.repartition(target_num_rows_per_block=256)``).

    Args:
        storage: resolves paths in the data; default ``cfg.input`` (with ``cfg.s3_endpoint``).
        resources: what each sampler actor reserves; default planned from the connected cluster.
        carried: the input columns to copy (default: from ``ds.schema()`` and ``cfg.keep_columns``,
            which may read the first block to learn the schema).
        actor_cls: the sampler stage, one instance per actor: constructed with
            :class:`pipeline.actor.TaskActor`'s keyword arguments, called on numpy batches of the
            prepared columns, returning its output columns (``pipeline.actor.OUTPUT_COLUMNS``);
            default :class:`~pipeline.actor.TaskActor`. Benchmarks pass a stand-in without a model.
        min_actors: start with this many sampler actors and grow to ``cfg.actors`` as GPUs free up or
            join (after a lost node); default: ``cfg.actors`` from the start.

    Example::

        import ray, pipeline
        ds = ray.data.read_parquet("s3://bucket/damaged/")        # id, image, mask, caption, ...
        cfg = pipeline.JobConfig(input="s3://bucket/damaged", output="s3://bucket/restored",
                                 model="stable-diffusion-v1-5/stable-diffusion-v1-5", task="restore")
        out = pipeline.apply(ds, cfg)
        out.filter(lambda r: r["status"] == "ok").write_parquet("s3://bucket/restored/")
    """
    from ray.data import ActorPoolStrategy

    task = TASKS[cfg.task]
    if carried is None:
        schema = ds.schema()
        names = list(schema.names)
        missing = [c for c in ("id", "image", "mask")[: 3 if task.mask else 2] if c not in names
                   and not (c != "id" and f"{c}_path" in names)]
        if missing:
            raise ValueError(f"dataset lacks column(s) {', '.join(missing)} (found {', '.join(names)}); {cfg.task} "
                             "reads id, image" + (", mask" if task.mask else "") + " (bytes or struct{bytes, path})")
        carried = carry.carried_schema(_arrow_schema(schema, cfg), cfg.task, cfg.keep_columns)
    if resources is None:
        import ray

        resources = plan_resources(cfg, ray.cluster_resources())
    storage = storage or Storage.from_uri(cfg.input, cfg.s3_endpoint)
    ds = ds.map_batches(carry.prepare_carrying, batch_format="pyarrow", batch_size=None,
                        fn_kwargs=dict(carried=carried, storage=storage, prompt=cfg.prompt, max_side=cfg.max_side,
                                       task=cfg.task, options=cfg.task_options, read_attempts=cfg.read_attempts))
    ds = ds.map_batches(
        carry.CarryingTaskActor, batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=min_actors or cfg.actors, max_size=cfg.actors),
        batch_size=cfg.batch_size, num_gpus=resources.gpus, num_cpus=resources.cpus,
        # the validated config and options travel as they are (Ray pickles the frozen SamplerConfig)
        fn_constructor_kwargs=dict(actor_cls=actor_cls, model=_model_source(cfg.model), task=cfg.task,
                                   config=cfg.sampler, options=cfg.task_options, device=resources.device,
                                   dtype=cfg.dtype, threads=resources.threads,
                                   endpoint=cfg.s3_endpoint or os.environ.get(ENDPOINT_ENV),
                                   compile_unet=cfg.compile_unet, channels_last=cfg.channels_last,
                                   pad_to=cfg.batch_size if cfg.pad_batches else None),
        # a crashed actor is restarted and its batch retried, but a batch that keeps killing actors
        # (host OOM, a native crash) fails the job after a few tries instead of looping forever
        max_task_retries=MAX_BATCH_RETRIES,
    )
    ds = ds.map_batches(carry.encode_carrying, batch_format="pyarrow", batch_size=None,
                        fn_kwargs=dict(model=cfg.model, task=cfg.task))
    # Start only once every actor holds its model (so work spreads over all of them), and fail with a
    # timeout instead of waiting forever for resources that never come.
    ds.context.wait_for_min_actors_s = cfg.actor_start_timeout_s
    return ds


def _arrow_schema(schema, cfg: JobConfig) -> pa.Schema:
    """A Ray Dataset schema as a pyarrow schema of its Arrow-typed columns; ValueError for a column to
    carry without an Arrow type (a pandas ``object`` column), which could not be written with one type."""
    typed = [(n, t) for n, t in zip(schema.names, schema.types, strict=True) if isinstance(t, pa.DataType)]
    untyped = [n for n in schema.names if n not in dict(typed) and n not in carry.consumed(cfg.task)
               and (cfg.keep_columns is None or n in cfg.keep_columns)]
    if untyped:
        raise ValueError(f"dataset column(s) {', '.join(untyped)} have no Arrow type (pandas object columns); "
                         "convert the dataset to Arrow blocks (map_batches(..., batch_format='pyarrow')) or leave "
                         "them out of keep_columns")
    return pa.schema(typed)


def _model_source(model: str) -> str:
    """What the actors stage and load: a local folder given relative to this driver becomes absolute
    (workers do not share its working directory); hub ids, URIs and built-in names pass through."""
    return str(Path(model).resolve()) if "://" not in model and Path(model).exists() else model
