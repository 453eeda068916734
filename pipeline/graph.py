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
actor (max_restarts=-1) and retries its in-flight block up to ``embed.MAX_BATCH_RETRIES`` times; a
retried commit overwrites its own file (see output.py). When a lost node makes the dataset fail, the
driver starts the graph over on what is not committed (:mod:`pipeline.recovery`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid

import pyarrow as pa

from pipeline import carry, embed, leases, model_cache, output, recovery, sources
from pipeline.actor import TaskActor
from pipeline.config import JobConfig
from pipeline.errors import retried_kinds
from pipeline.resources import Resources, plan_resources
from pipeline.storage import Storage
from pipeline.summary import COMMITTED_COLUMNS, RUN_COLUMNS, pending_count, summarize
from pipeline.tasks import TASKS

log = logging.getLogger(__name__)
MAX_BLOCK_ROWS = 128     # rows per block of the CPU stages (a whole number of batches)
BLOCKS_PER_ACTOR = 4     # blocks per sampler actor the pending items are split into, at least


def block_rows(cfg: JobConfig, todo: int) -> int:
    """Rows per block: whole batches, at most MAX_BLOCK_ROWS, and small enough that the ``todo``
    items make BLOCKS_PER_ACTOR blocks per actor (so a short job still spreads over every actor)."""
    batches = todo // (cfg.actors * BLOCKS_PER_ACTOR * cfg.batch_size)
    return max(1, min(batches, MAX_BLOCK_ROWS // cfg.batch_size)) * cfg.batch_size


def run_graph(
    cfg: JobConfig, inputs: sources.Inputs, done: pa.Array, out: Storage, run_id: str, res: Resources, todo: int,
    carried: pa.Schema | None = None, actor_cls: type = TaskActor, min_actors: int | None = None,
) -> None:
    """Stream the ``todo`` pending items through the stages (:func:`pipeline.embed.apply`, sampling
    with ``actor_cls``) and commit them to ``out``; ``carried``: the input columns copied to the
    output (:mod:`pipeline.carry`); ``min_actors``: see :func:`pipeline.embed.apply`."""
    carried = carried if carried is not None else pa.schema([])
    ds = sources.read(inputs, done, block_rows=block_rows(cfg, todo), limit=cfg.limit)
    ds = embed.apply(ds, cfg, storage=inputs.storage, resources=res, carried=carried, actor_cls=actor_cls,
                     min_actors=min_actors)
    ds.write_datasink(output.ParquetCommitSink(out, run_id, carry.output_schema(cfg.task, carried), cfg.rows_per_file))


def run(cfg: JobConfig, *, actor_cls: type = TaskActor) -> dict:
    """Run the job to completion (resuming whatever an earlier run committed) and return its
    summary, also written to ``<output>/_summary.json``. Connects to Ray ($RAY_ADDRESS or a new
    local cluster) unless already connected. ``actor_cls``: the sampler actor (see :func:`pipeline.apply`)."""
    started = time.time()
    src, out = Storage.from_uri(cfg.input, cfg.s3_endpoint), Storage.from_uri(cfg.output, cfg.s3_endpoint)
    inputs = sources.discover(src, mask=TASKS[cfg.task].mask, input_format=cfg.input_format,
                              options=cfg.input_options, s3_endpoint=cfg.s3_endpoint)
    carried = carry.carried_schema(inputs.schema, cfg.task, cfg.keep_columns)  # before any work: clashes fail fast
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    with output.hold(out, run_id) as (holding, before):  # fails fast (LeaseHeld) while another run holds the output
        return _run_holding(cfg, actor_cls, started, src, out, inputs, carried, holding, before)


def _pending(inputs: sources.Inputs, out: Storage, files: list[str]) -> tuple[pa.Array, int]:
    """The ids committed in ``files`` and how many input ids are not among them."""
    done = output.read_output(out, files, ["id"]).column("id").combine_chunks()
    return done, pending_count(inputs.ids, done)


def _run_holding(cfg: JobConfig, actor_cls: type, started: float, src: Storage, out: Storage, inputs: sources.Inputs,
                 carried: pa.Schema, holding: leases.Holding, before: list[str]) -> dict:
    import ray

    run_id = holding.run_id
    if cfg.retry_errors != "none":
        before, dropped = output.drop_errors(out, before, retried_kinds(cfg.retry_errors))
        log.info("run %s: %d %s error row(s) removed from %s to be processed again", run_id, dropped,
                 "transient" if cfg.retry_errors == "transient" else "committed", out.uri())
    done, pending = _pending(inputs, out, before)
    todo = min(pending, cfg.limit or pending)
    log.info("run %s: %d input item(s) in %s, %d already in %s, %d to process",
             run_id, len(inputs.ids), src.uri(), len(inputs.ids) - pending, out.uri(), todo)
    res, report = None, recovery.Recovery()
    if todo:
        if not ray.is_initialized():
            init = time.time()
            ray.init()
            started += time.time() - init  # cluster start-up is not the job's time
        res = plan_resources(cfg, ray.cluster_resources())
        log.info("%s: %d sampler actor(s): %g GPU, %g CPU each, device %s, batch size %d, model %s",
                 cfg.task, cfg.actors, res.gpus, res.cpus, res.device, cfg.batch_size, cfg.model)
        dead_before = recovery.nodes(alive=False)
        _run_recovering(cfg, inputs, done, todo, out, holding, res, carried, actor_cls, report)
        report.note_lost(recovery.nodes(alive=False) - dead_before)
    after = output.committed_files(out)
    new_files = sorted(set(after) - set(before))
    summary = summarize(output.read_output(out, after, list(COMMITTED_COLUMNS)),
                        output.read_output(out, new_files, list(RUN_COLUMNS)), inputs.ids, time.time() - started,
                        cfg.actors)
    summary.update(run_id=run_id, input=src.uri(), output=out.uri(), model=cfg.model,
                   family=model_cache.model_family(cfg.model, cfg.s3_endpoint),
                   gpus_per_actor=res.gpus if res else None, recovery=report.to_dict(), tuning=cfg.applied.to_dict(),
                   config=cfg.to_dict())
    summary["summary_uri"] = output.write_summary(out, summary)
    log.info("run %s done: %d ok, %d error, %d pending; summary in %s", run_id, summary["ok"], summary["error"],
             summary["pending"], summary["summary_uri"])
    return summary


def _run_recovering(cfg: JobConfig, inputs: sources.Inputs, done: pa.Array, todo: int, out: Storage,
                    holding: leases.Holding, res: Resources, carried: pa.Schema, actor_cls: type,
                    report: recovery.Recovery) -> None:
    """:func:`run_graph`, started over on what is pending after a lost node (:mod:`pipeline.recovery`)."""
    attempt, min_actors, committed_at_start, run_id = cfg, None, len(done), holding.run_id
    while True:
        alive = recovery.nodes()
        try:
            return run_graph(attempt, inputs, done, out, holding.run_id, res, todo, carried, actor_cls, min_actors)
        except Exception as exc:
            failed = time.monotonic()
            lost = recovery.lost_nodes(alive, exc)
            if not lost or report.restarts >= recovery.MAX_RESTARTS:
                raise
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        # out of the except block: the exception's frames, which hold the failed dataset, are gone
        recovery.free_failed_attempt()
        report.note_lost(lost)
        report.restarts += 1
        log.warning("run %s: lost %d node(s) (%s) and the dataset failed (%s); starting over on what is not "
                    "committed (restart %d of at most %d)", holding.run_id, len(lost),
                    ", ".join(sorted(n[:12] for n in lost)), reason, report.restarts, recovery.MAX_RESTARTS)
        done, pending = _pending(inputs, out, output.hand_over(holding, f"{run_id}.{report.restarts}"))
        todo = min(pending, cfg.limit - (len(done) - committed_at_start)) if cfg.limit else pending
        min_actors = recovery.actors_now(cfg.actors, res.gpus, cfg.actor_start_timeout_s) if todo > 0 else 0
        if todo > 0 and not min_actors:
            raise RuntimeError(f"lost node(s) {', '.join(sorted(lost))} ({reason}) and no GPU came back in "
                               f"{cfg.actor_start_timeout_s:g} s for a sampler actor")
        report.recover_s.append(round(time.monotonic() - failed, 2))
        if todo <= 0:
            return None
        attempt = dataclasses.replace(cfg, limit=todo) if cfg.limit else cfg
        log.info("run %s: %d item(s) to go on %d sampler actor(s), more as GPUs join (up to %d)", holding.run_id,
                 todo, min_actors, cfg.actors)
