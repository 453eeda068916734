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
import platform
import random
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fcs.settings import integer, number, optional, setting, validate_fields
from fcs.tuning import Problem, Source, candidates, choice, make_problems, record, scores
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

    check_task(cfg.task)
    task = TASKS[cfg.task]
    out = Storage.from_uri(cfg.output, cfg.s3_endpoint)
    chosen = candidates.resolve(tune.candidates, task.sampler, task.through_decoder, held)
    plan = {"format": record.FORMAT, "task": cfg.task, "task_options": cfg.task_options, "model": cfg.model,
            "input": Storage.from_uri(cfg.input, cfg.s3_endpoint).uri(), "items": tune.items, "seed": tune.seed,
            "held": held, "candidates": [_entry(c, config) for c, config in chosen]}
    plan = _plan(cfg, tune, plan, out)
    configs = [c.config(task.sampler, task.through_decoder, held) for c, _ in chosen]
    inner = dataclasses.replace(cfg, input=out.uri(out.path(PROBLEMS)), output=out.uri(out.path(SAMPLES)),
                                input_format="parquet", input_options={}, keep_columns=(), limit=None, tuning=None,
                                rows_per_file=max(cfg.batch_size, 4))
    started = time.time()
    summary = _run_inner(inner, tune_actor(configs))
    made = _record(cfg, tune, plan, out, summary, time.time() - started)
    out.put_atomic(out.path(record.RECORD), json.dumps(made, indent=1).encode())
    log.info("tuning record written to %s: chose %s (%g UNet calls per item, hole PSNR %.2f dB)",
             out.uri(out.path(record.RECORD)), made["chosen"]["name"], made["chosen"]["calls"],
             made["chosen"]["psnr"]["mean"])
    return made


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
    if len(made.problems) < need:
        reasons = "; ".join(f"{n} {why}" for why, n in {**read, **made.skipped}.items()) or "none were read"
        raise ValueError(f"fcs tune: only {len(made.problems)} of the {sum(read.values()) + len(made.skipped) + len(made.problems)} "
                         f"input item(s) sampled could make a problem ({reasons}); tuning needs at least {need}")
    _write_problems(out, made.problems, len(plan["candidates"]))
    plan = {**plan, "problems": [p.id for p in made.problems], "sources": [p.source for p in made.problems],
            "shapes": [p.shape for p in made.problems], "read": len(made.problems) + sum(made.skipped.values())
            + sum(read.values()), "skipped": {**read, **made.skipped}}
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


def _png(array: np.ndarray) -> bytes:
    from fcs.images import encode_png

    return encode_png(array)


def _write_problems(out: Storage, problems: list[Problem], count: int) -> None:
    """The sampler's input (every candidate × problem, candidate-major) and, apart, the truth."""
    rows = {"id": [], "image": [], "mask": [], "prompt": [], "seed": []}
    for k in range(count):
        for p in problems:
            rows["id"].append(f"{k}/{p.id}")
            rows["image"].append(_png(p.image))
            rows["mask"].append(None if p.mask is None else _png((np.clip(p.mask, 0, 1) * 255).round()
                                                                 .astype(np.uint8)))
            rows["prompt"].append(p.prompt)
            rows["seed"].append(stages.default_seed(p.id))
    if all(m is None for m in rows["mask"]):
        del rows["mask"]
    truth = {"id": [p.id for p in problems], "source": [p.source for p in problems],
             "truth": [_png(p.truth) for p in problems], "region": [_png(p.region.astype(np.uint8) * 255)
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
    import torch

    truth = load_truth(out)
    rows = samples(out)
    problems = plan["problems"]
    ok = {(r["candidate"], r["problem"]): r for r in rows if r["status"] == "ok"}
    valid = [p for p in problems if any((k, p) in ok for k in range(len(plan["candidates"])))]
    need = min(tune.items, MIN_PROBLEMS)
    if len(valid) < need:
        errors = Counter(_reason(r["error"]) for r in rows if r["status"] != "ok")
        raise ValueError(f"fcs tune: only {len(valid)} of {len(problems)} problem(s) finished for any candidate "
                         f"({'; '.join(f'{n} {why}' for why, n in errors.items())}); tuning needs at least {need}")
    entries = []
    for k, entry in enumerate(plan["candidates"]):
        mine = [ok[(k, p)] for p in valid if (k, p) in ok]
        failed = [r for r in rows if r["candidate"] == k and r["status"] != "ok"]
        per = [scores.score(truth[r["problem"]][0], _decode(r["image"]["bytes"]), truth[r["problem"]][1])
               for r in mine]
        entries.append({**entry, "complete": len(mine) == len(valid), "ok": len(mine), "errors": len(failed),
                        "error": failed[0]["error"] if failed else None,
                        "calls": round(float(np.mean([r["nfe"] for r in mine])), 2) if mine else entry["nfe_per_item"],
                        **(scores.summarize(per) if per else {s: None for s in scores.SCORES}),
                        "per_problem": {r["problem"]: {k2: round(v, 4) for k2, v in s.items()}
                                        for r, s in zip(mine, per, strict=True)},
                        "sample_s": round(float(np.mean([r["sample_s"] for r in mine])), 3) if mine else None,
                        "peak_mem_mb": round(float(max(r["peak_mem_mb"] for r in mine)), 1) if mine else None})
    best = choice.choose([e for e in entries if e["psnr"]], tune.tolerance_db, tune.max_calls)
    devices = Counter(r["device"] for r in rows if r.get("device"))
    return {
        "format": record.FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fcs_version": record.fcs_version(), "task": cfg.task, "task_options": cfg.task_options,
        "model": {"id": cfg.model, "fingerprint": record.fingerprint(cfg.model)},
        "rule": {"text": choice.describe(tune.tolerance_db, tune.max_calls), "tolerance_db": tune.tolerance_db,
                 "max_calls": tune.max_calls, "detail_floor": choice.DETAIL_FLOOR},
        "held": plan["held"], "input": plan["input"],
        "items": {"read": plan["read"], "used": len(valid), "ids": [plan["sources"][problems.index(p)] for p in valid],
                  "problems": valid, "skipped": plan["skipped"], "failed_problems": len(problems) - len(valid)},
        "hardware": {"device": devices.most_common(1)[0][0] if devices else None, "dtype": cfg.dtype,
                     "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                     "actors": cfg.actors, "batch_size": cfg.batch_size},
        "wall_s": round(wall_s, 1), "samples_summary": summary.get("summary_uri"),
        "candidates": entries,
        "chosen": {k: best[k] for k in ("name", "preset", "changes", "settings", "calls", "psnr", "ssim", "detail")},
    }
