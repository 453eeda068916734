"""``fcs tune``: measure sampler candidates on problems made from the user's own data, as a job.

    <output>/plan.json          what is being tuned: task, model, input, candidates, the problems' ids
    <output>/problems/          the sampler's input: one row per (candidate, problem), id "<k>/<problem>",
                                the problem's own seed, so every candidate runs the same problems and noise
    <output>/truth/             the truth and scored region per problem; never read by the sampler
    <output>/samples/           an ordinary job output (part-*.parquet, _summary.json): resumable
    <output>/tuning.json        the record (:mod:`fcs.tuning.record`), written last

The sampling is :func:`pipeline.run` over ``problems/`` with :class:`TuneActor`, which is the job's
sampler actor running each row with its candidate's settings: the same Ray Data graph, resident models,
error rows and resume as ``fcs run``. A rerun with the same output and settings goes on where the last
one stopped; one with other settings is refused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fcs.images import encode_png
from fcs.settings import integer, number, optional, setting, validate_fields
from fcs.tuning import Problem, Source, candidates, choice, make_problems, record
from fcs.tuning.evaluate import errors, evaluate, make_record
from pipeline import output as outputs
from pipeline import sources, stages
from pipeline.actor import TaskActor
from pipeline.config import JobConfig
from pipeline.storage import Storage
from pipeline.tasks import TASKS

log = logging.getLogger(__name__)
MIN_PROBLEMS = 4  # fewer usable items than this (or than --items, if smaller) cannot be tuned on
READ_FACTOR = 3   # input items sampled per problem wanted (some cannot make one)
PLAN, PROBLEMS, TRUTH, SAMPLES = "plan.json", "problems", "truth", "samples"
_PLAN_KEYS = ("task", "task_options", "model", "input", "items", "seed", "held", "candidates")


def _specs(value) -> str | None:
    ok = value is None or (isinstance(value, tuple) and value and all(isinstance(v, str) and v for v in value))
    return None if ok else "null (every preset and a grid around each) or a list of preset[:field=value,...]"


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """What ``fcs tune`` adds to a job's settings (each declared once; the flags derive from these)."""

    items: int = setting(8, "problems to tune on, one per input item sampled", integer(2), group="tuning")
    max_calls: int | None = setting(None, "choose only among candidates of at most this many UNet calls per item "
                                          "(none: any)", optional(integer(1)), group="tuning", cli={"type": int})
    candidates: tuple[str, ...] | None = setting(
        None, "candidates, each preset or preset:field=value,... (none: every preset and a grid around each)",
        _specs, group="tuning", cli={"nargs": "+", "metavar": "CANDIDATE"},
        normalize=lambda v: tuple(v) if isinstance(v, list) else v)
    tolerance_db: float = setting(choice.TOLERANCE_DB, "PSNR a cheaper candidate may give up against the best",
                                  number(0), group="tuning")
    seed: int = setting(0, "seed of the item sample and the hidden regions' placement", integer(0), group="tuning")

    def __post_init__(self) -> None:
        validate_fields(self)
        for spec in self.candidates or ():
            candidates.parse_candidate(spec)


class TuneActor(TaskActor):
    """The job's sampler actor, running each row with the settings of its candidate (the ``<k>/`` of its
    id): :data:`CONFIGS` is set per job by :func:`tune_actor`."""

    CONFIGS: tuple = ()

    def __call__(self, batch: dict) -> dict:
        keys = [int(str(i).split("/", 1)[0]) for i in batch["id"]]
        parts = {}
        for k in dict.fromkeys(keys):
            rows = np.array([i for i, key in enumerate(keys) if key == k])
            self.config = self.CONFIGS[k]
            parts[k] = (rows, super().__call__({name: column[rows] for name, column in batch.items()}))
        order = np.argsort(np.concatenate([rows for rows, _ in parts.values()]), kind="stable")
        return {name: np.concatenate([out[name] for _, out in parts.values()])[order] for name in self.columns}


def tune_actor(configs) -> type:
    return type("TuneActor", (TuneActor,), {"CONFIGS": tuple(configs)})


def run(cfg: JobConfig, tune: TuneConfig, held: dict) -> dict:
    """Tune ``cfg.task`` on ``cfg.model`` over ``cfg.input``, writing into ``cfg.output``; ``held``: the
    sampler fields given by the user, held fixed over every candidate. Returns the record, also written
    to ``<output>/tuning.json``. ValueError (one line) for input the tuner cannot use."""
    from fcs.tuning.problems import check_task

    started = time.time()
    check_task(cfg.task)
    task = TASKS[cfg.task]
    out = Storage.from_uri(cfg.output, cfg.s3_endpoint)
    chosen = candidates.resolve(tune.candidates, task.sampler, task.through_decoder, held)
    plan = {"format": record.FORMAT, "task": cfg.task, "task_options": cfg.task_options, "model": cfg.model,
            "input": Storage.from_uri(cfg.input, cfg.s3_endpoint).uri(), "items": tune.items, "seed": tune.seed,
            "held": held, "candidates": [_entry(c, config) for c, config in chosen]}
    plan = _plan(cfg, tune, plan, out)
    configs = [config for _, config in chosen]
    inner = dataclasses.replace(cfg, input=out.uri(out.path(PROBLEMS)), output=out.uri(out.path(SAMPLES)),
                                input_format="parquet", input_options={}, keep_columns=(), limit=None, tuning=None,
                                rows_per_file=max(cfg.batch_size, 4), threads=cfg.threads or _cpu_threads(cfg))
    summary = _run_inner(inner, tune_actor(configs))
    made = _record(cfg, tune, plan, out, summary, time.time() - started)
    out.put_atomic(out.path(record.RECORD), json.dumps(made, indent=1).encode())
    log.info("tuning record written to %s: chose %s (%g UNet calls per item, hole PSNR %.2f dB)",
             out.uri(out.path(record.RECORD)), made["chosen"]["name"], made["chosen"]["calls"],
             made["chosen"]["psnr"]["mean"])
    return made


def _cpu_threads(cfg: JobConfig) -> int:
    """On CPU the tuning's actors take every core: its CPU stages run only at the start of each block
    (a job's keep one core for theirs, which stream all along)."""
    return max(1, (os.cpu_count() or 1) // cfg.actors)


def _run_inner(inner: JobConfig, actor_cls: type) -> dict:
    import pipeline

    return pipeline.run(inner, actor_cls=actor_cls)


def _entry(candidate, config) -> dict:
    return {"name": candidate.name, "preset": candidate.preset, "changes": dict(candidate.changes),
            "settings": config.to_dict(), "nfe_per_item": config.nfe_per_item}


def _plan(cfg: JobConfig, tune: TuneConfig, plan: dict, out: Storage) -> dict:
    """The plan already in ``out`` if it is this one (resume), else a new one with its problems written."""
    path = out.path(PLAN)
    if out.fs.exists(path):
        before = json.loads(out.read_bytes(path))
        differs = [k for k in _PLAN_KEYS if _jsonable(before.get(k)) != _jsonable(plan[k])]
        if differs:
            raise ValueError(f"{out.uri()} holds a tuning run with other settings ({', '.join(differs)} differ); "
                             "give another --output, or delete it to start over")
        log.info("resuming the tuning run in %s (%d problems, %d candidates)", out.uri(), len(before["problems"]),
                 len(before["candidates"]))
        return before
    made, read = _problems(cfg, tune)
    need = min(tune.items, MIN_PROBLEMS)
    skipped = {**read, **made.skipped}
    tried = sum(skipped.values()) + len(made.problems)
    if len(made.problems) < need:
        reasons = "; ".join(f"{n} {why}" for why, n in skipped.items()) or "none were read"
        raise ValueError(f"fcs tune: only {len(made.problems)} of the {tried} input item(s) sampled could make a "
                         f"problem ({reasons}); tuning needs at least {need}")
    _write_problems(out, made.problems, len(plan["candidates"]))
    plan = {**plan, "problems": [p.id for p in made.problems], "sources": [p.source for p in made.problems],
            "shapes": [p.shape for p in made.problems], "read": tried, "skipped": skipped}
    out.put_atomic(path, json.dumps(plan, indent=1, default=str).encode())  # last: the problems are complete
    return plan


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _problems(cfg: JobConfig, tune: TuneConfig):
    """Problems from a seeded sample of the input items, and per reason the sampled items that could not
    be read or decoded."""
    import ray

    task = TASKS[cfg.task]
    src = Storage.from_uri(cfg.input, cfg.s3_endpoint)
    inputs = sources.discover(src, mask=task.mask, input_format=cfg.input_format, options=cfg.input_options,
                              s3_endpoint=cfg.s3_endpoint)
    ids = inputs.ids.to_pylist()
    sample = random.Random(tune.seed).sample(ids, min(len(ids), max(READ_FACTOR * tune.items, tune.items + 8)))
    chosen = set(sample)
    done = pa.array([i for i in ids if i not in chosen], pa.string())
    if not ray.is_initialized():
        ray.init()
    ds = sources.read(inputs, done, block_rows=max(1, len(sample)))
    ds = ds.map_batches(stages.prepare, batch_format="pyarrow", batch_size=None,
                        fn_kwargs=dict(storage=src, prompt=cfg.prompt, max_side=cfg.max_side, task=cfg.task,
                                       options=cfg.task_options, read_attempts=cfg.read_attempts, check_items=False))
    rows = {r["id"]: r for r in ds.take_all()}
    read = Counter(_reason(r["error"]) for r in rows.values() if r["error"])
    good = [rows[i] for i in sample if i in rows and not rows[i]["error"]]
    items = [Source(r["id"], _array(r["rgb"], r["height"], r["width"], 3), None if r["mask"] is None else
                    _array(r["mask"], r["height"], r["width"], None, np.float32), r["prompt"] or "") for r in good]
    # an item below the model's minimum side becomes an error row of every candidate, counted then
    return make_problems(cfg.task, items, cfg.task_options, tune.items, tune.seed), read


def _reason(error: str) -> str:
    return f"unusable ({error.split(':', 1)[0]}: {error.split(':', 1)[-1].strip()[:80]})"


def _array(data: bytes, h: int, w: int, c: int | None, dtype=np.uint8) -> np.ndarray:
    shape = (h, w, c) if c else (h, w)
    return np.frombuffer(data, dtype).reshape(shape).copy()


def _write_problems(out: Storage, problems: list[Problem], count: int) -> None:
    """The sampler's input (every candidate × problem, candidate-major) and, apart, the truth."""
    rows = {"id": [], "image": [], "mask": [], "prompt": [], "seed": []}
    for k in range(count):
        for p in problems:
            rows["id"].append(f"{k}/{p.id}")
            rows["image"].append(encode_png(p.image))
            rows["mask"].append(None if p.mask is None else encode_png((np.clip(p.mask, 0, 1) * 255).round()
                                                                 .astype(np.uint8)))
            rows["prompt"].append(p.prompt)
            rows["seed"].append(stages.default_seed(p.id))
    if all(m is None for m in rows["mask"]):
        del rows["mask"]
    truth = {"id": [p.id for p in problems], "source": [p.source for p in problems],
             "truth": [encode_png(p.truth) for p in problems], "region": [encode_png(p.region.astype(np.uint8) * 255)
                                                                     for p in problems]}
    for folder, table in ((PROBLEMS, pa.table(rows)), (TRUTH, pa.table(truth))):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        out.fs.makedirs(out.path(folder), exist_ok=True)
        out.put_atomic(out.path(folder, "part-0.parquet"), buf.getvalue())


def _decode(png: bytes, mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


def load_truth(out: Storage) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """problem id -> (truth uint8 (H, W, 3), scored region bool (H, W))."""
    table = pq.read_table(io.BytesIO(out.read_bytes(out.path(TRUTH, "part-0.parquet"))))
    return {r["id"]: (_decode(r["truth"]), _decode(r["region"], "L") > 127) for r in table.to_pylist()}


def samples(out: Storage) -> list[dict]:
    """The committed sample rows of a tuning output, with ``candidate`` (index) and ``problem`` split
    from their ids."""
    store = Storage.from_uri(out.uri(out.path(SAMPLES)), out.endpoint)
    table = outputs.read_output(store, columns=["id", "status", "error", "image", "nfe", "sample_s", "peak_mem_mb",
                                                "device"])
    rows = table.to_pylist()
    for row in rows:
        k, row["problem"] = row["id"].split("/", 1)
        row["candidate"] = int(k)
    return rows


def _record(cfg: JobConfig, tune: TuneConfig, plan: dict, out: Storage, summary: dict, wall_s: float) -> dict:
    truth = load_truth(out)
    rows = samples(out)
    results = {(r["candidate"], r["problem"]): {
        "image": _decode(r["image"]["bytes"]) if r["status"] == "ok" else None, "error": r["error"], "nfe": r["nfe"],
        "sample_s": r["sample_s"], "peak_mem_mb": r["peak_mem_mb"]} for r in rows}
    entries, valid = evaluate(plan["candidates"], plan["problems"], results, truth)
    need = min(tune.items, MIN_PROBLEMS)
    if len(valid) < need:
        failed = "; ".join(f"{n} {why}" for why, n in errors(results).items())
        raise ValueError(f"fcs tune: only {len(valid)} of {len(plan['problems'])} problem(s) finished for any "
                         f"candidate ({failed}); tuning needs at least {need}")
    devices = Counter(r["device"] for r in rows if r.get("device"))
    return make_record(
        task=cfg.task, task_options=cfg.task_options, model=cfg.model, entries=entries, valid=valid,
        sources=dict(zip(plan["problems"], plan["sources"], strict=True)),
        items={"read": plan["read"], "skipped": plan["skipped"], "problems": len(plan["problems"])},
        held=plan["held"], tolerance_db=tune.tolerance_db, max_calls=tune.max_calls, input=plan["input"],
        hardware={"device": devices.most_common(1)[0][0] if devices else None, "dtype": cfg.dtype,
                  "actors": cfg.actors, "batch_size": cfg.batch_size},
        wall_s=round(wall_s, 1), samples_summary=summary.get("summary_uri"))
