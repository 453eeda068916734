"""The batch job: plan resources, resume, run the Ray Data graph, summarize.

    read (Parquet / folder / WebDataset / manifest, blocks of whole batches, committed ids skipped)
      -> prepare   CPU tasks: read bytes, decode, validate      (pipeline.stages.prepare)
      -> TaskActor actor pool, one resident model per actor,    (pipeline.actor.TaskActor)
                   running the job's task (pipeline.tasks.TASKS) batch_size items per call
      -> encode    CPU tasks: PNG + output schema               (pipeline.stages.encode)
      -> commit    one atomic Parquet file per rows_per_file rows (pipeline.output.ParquetCommitSink)

prepare -> TaskActor -> encode is :func:`pipeline.embed.apply`, public for a user's own pipeline; the
input columns a task does not consume ride along (:mod:`pipeline.carry`).

Blocks hold several batches (up to MAX_BLOCK_ROWS rows, fewer when that would leave an actor idle):
Ray Data's per-block costs are then paid once per many items. Ray Data restarts a crashed sampler
actor (max_restarts=-1) and retries its in-flight block up to MAX_BATCH_RETRIES times; a retried
commit overwrites its own file (see output.py).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import carry, embed, model_cache, output, sources
from pipeline.config import JobConfig
from pipeline.errors import retried_kinds
from pipeline.storage import Storage
from pipeline.summary import summarize
from pipeline.tasks import TASKS

log = logging.getLogger(__name__)
MAX_BATCH_RETRIES = 3
MAX_BLOCK_ROWS = 128     # rows per block of the CPU stages (a whole number of batches)
BLOCKS_PER_ACTOR = 4     # blocks per sampler actor the pending items are split into, at least


@dataclass(frozen=True)
class Resources:
    """What each sampler actor reserves, the torch device it is told to use, and its CPU threads."""

    gpus: float
    cpus: float
    device: str
    threads: int | None = None


def plan_resources(cfg: JobConfig, cluster: dict) -> Resources:
    """One GPU per actor when the cluster has GPUs, CPU otherwise; fail fast (ValueError) when the
    request cannot be met, because Ray would otherwise wait for the missing GPUs without end."""
    available = float(cluster.get("GPU", 0))
    gpus = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else (1.0 if available >= 1 else 0.0)
    if gpus > 0 and gpus * cfg.actors > available:
        raise ValueError(
            f"{cfg.actors} sampler actor(s) with {gpus:g} GPU each need {gpus * cfg.actors:g} GPU(s) but the Ray "
            f"cluster has {available:g}; lower actors, set gpus_per_actor (e.g. 0.5 to share a GPU, 0 for CPU), "
            "or add GPU nodes"
        )
    device = "cpu" if gpus == 0 and cfg.device == "auto" else cfg.device
    threads = None
    if gpus == 0:
        # Ray starts workers with one torch thread; on CPU share this machine's cores among the actors,
        # keeping one core for the read/decode/encode stages.
        threads = max(1, int(cfg.cpus_per_actor) or ((os.cpu_count() or 1) - 1) // cfg.actors)
        log.warning("no GPU requested or found in the Ray cluster: %d sampler actor(s) run on CPU with %d torch "
                    "thread(s) each (slow for real models)", cfg.actors, threads)
    return Resources(gpus=float(gpus), cpus=float(cfg.cpus_per_actor), device=device, threads=threads)


def block_rows(cfg: JobConfig, todo: int) -> int:
    """Rows per block: whole batches, at most MAX_BLOCK_ROWS, and small enough that the ``todo``
    items make BLOCKS_PER_ACTOR blocks per actor (so a short job still spreads over every actor)."""
    batches = todo // (cfg.actors * BLOCKS_PER_ACTOR * cfg.batch_size)
    return max(1, min(batches, MAX_BLOCK_ROWS // cfg.batch_size)) * cfg.batch_size


def run_graph(
    cfg: JobConfig, inputs: sources.Inputs, done: pa.Array, out: Storage, run_id: str, res: Resources, todo: int,
    carried: pa.Schema | None = None,
) -> None:
    """Stream the ``todo`` pending items through the stages (:func:`pipeline.embed.apply`) and commit
    them to ``out``; ``carried``: the input columns copied to the output (:mod:`pipeline.carry`)."""
    carried = carried if carried is not None else pa.schema([])
    ds = sources.read(inputs, done, block_rows=block_rows(cfg, todo), limit=cfg.limit)
    ds = embed.apply(ds, cfg, storage=inputs.storage, resources=res, carried=carried)
    ds.write_datasink(output.ParquetCommitSink(out, run_id, carry.output_schema(cfg.task, carried), cfg.rows_per_file))


def run(cfg: JobConfig) -> dict:
    """Run the job to completion (resuming whatever an earlier run committed) and return its
    summary, also written to ``<output>/_summary.json``. Connects to Ray ($RAY_ADDRESS or a new
    local cluster) unless already connected."""
    import ray

    started = time.time()
    src, out = Storage.from_uri(cfg.input, cfg.s3_endpoint), Storage.from_uri(cfg.output, cfg.s3_endpoint)
    inputs = sources.discover(src, mask=TASKS[cfg.task].mask, input_format=cfg.input_format,
                              options=_input_options(cfg), s3_endpoint=cfg.s3_endpoint)
    carried = carry.carried_schema(inputs.schema, cfg.task, cfg.keep_columns)  # before any work: clashes fail fast
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    before = output.claim(out, run_id)
    if cfg.retry_errors != "none":
        before, dropped = output.drop_errors(out, before, retried_kinds(cfg.retry_errors))
        log.info("run %s: %d %s error row(s) removed from %s to be processed again", run_id, dropped,
                 "transient" if cfg.retry_errors == "transient" else "committed", out.uri())
    done = output.read_output(out, before, ["id"]).column("id").combine_chunks()
    pending = len(inputs.ids) - (int(pc.sum(pc.is_in(inputs.ids, value_set=done)).as_py() or 0) if len(done) else 0)
    todo = min(pending, cfg.limit or pending)
    log.info("run %s: %d input item(s) in %s, %d already in %s, %d to process",
             run_id, len(inputs.ids), src.uri(), len(inputs.ids) - pending, out.uri(), todo)
    res = None
    if todo:
        if not ray.is_initialized():
            init = time.time()
            ray.init()
            started += time.time() - init  # cluster start-up is not the job's time
        res = plan_resources(cfg, ray.cluster_resources())
        log.info("%s: %d sampler actor(s): %g GPU, %g CPU each, device %s, batch size %d, model %s",
                 cfg.task, cfg.actors, res.gpus, res.cpus, res.device, cfg.batch_size, cfg.model)
        run_graph(cfg, inputs, done, out, run_id, res, todo, carried)
    after = output.committed_files(out)
    new_files = sorted(set(after) - set(before))
    summary = summarize(output.read_output(out, after, ["id", "status"]),
                        output.read_output(out, new_files, ["status", "error", "sample_s", "nfe"]), inputs.ids,
                        time.time() - started, cfg.actors)
    summary.update(run_id=run_id, input=src.uri(), output=out.uri(), model=cfg.model,
                   family=model_cache.model_family(cfg.model, cfg.s3_endpoint),
                   gpus_per_actor=res.gpus if res else None, config=cfg.to_dict())
    summary["summary_uri"] = output.write_summary(out, summary)
    log.info("run %s done: %d ok, %d error, %d pending; summary in %s", run_id, summary["ok"], summary["error"],
             summary["pending"], summary["summary_uri"])
    return summary


def _input_options(cfg: JobConfig) -> dict:
    """The job's input format options. Bridge until JobConfig holds them as ``input_options``: its
    fields of the same names (the WebDataset member suffixes); options it lacks take their defaults."""
    return {o.name: getattr(cfg, o.name) for o in sources.input_options(cfg.input_format) if hasattr(cfg, o.name)}


def _model_source(model: str) -> str:
    """What the actors stage and load: a local folder given relative to this driver becomes absolute
    (workers do not share its working directory); hub ids, URIs and built-in names pass through."""
    return str(Path(model).resolve()) if "://" not in model and Path(model).exists() else model
