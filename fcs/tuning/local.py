"""The tuner in this process, without Ray: for notebooks, the benchmarks and the built-in models' own
records. The same problems, candidates, scores, rule and record as ``fcs tune`` (:mod:`pipeline.tuning`);
the samples come from the task function called here instead of from the job's actors."""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from fcs.config import SamplerConfig
from fcs.denoiser import Denoiser
from fcs.tasks import Items
from fcs.tuning import candidates as candidate_specs
from fcs.tuning import choice
from fcs.tuning.evaluate import evaluate, make_record
from fcs.tuning.problems import Problem, Source, make_problems

log = logging.getLogger(__name__)


def sample_problems(denoiser: Denoiser, run: Callable, problems: Sequence[Problem], configs: Sequence[SamplerConfig],
                    options: dict | None = None, batch_size: int = 8, seed_of: Callable[[str], int] | None = None,
                    show_progress: bool = True) -> dict:
    """(candidate index, problem id) -> {image, error, nfe, sample_s, peak_mem_mb}: every config on every
    problem, ``batch_size`` problems per call of the task function ``run`` (``fcs.tasks.<task>.run``), each
    problem with its own seed (``seed_of``; default: its index) whatever the config."""
    seeds = {p.id: (seed_of(p.id) if seed_of else i) for i, p in enumerate(problems)}
    results = {}
    batches = [problems[i:i + batch_size] for i in range(0, len(problems), batch_size)]
    bar = tqdm(total=len(configs) * len(problems), desc="tuning", disable=not show_progress, leave=False)
    for k, config in enumerate(configs):
        for batch in batches:
            items = Items([p.image for p in batch], [p.mask for p in batch], [p.prompt for p in batch],
                          [seeds[p.id] for p in batch])
            with torch.no_grad() if config.method != "dps" else torch.enable_grad():
                out = run(denoiser, items, config, **(options or {}))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            for p, res in zip(batch, out, strict=True):
                results[(k, p.id)] = {"image": res.image, "error": res.error, "nfe": res.nfe,
                                      "sample_s": res.sample_s, "peak_mem_mb": peak}
            bar.update(len(batch))
    bar.close()
    return results


def tune(denoiser: Denoiser, task: str, sources: Sequence[Source], *, run: Callable, base: SamplerConfig,
         through_decoder: bool = False, options: dict | None = None, specs: Sequence[str] | None = None,
         held: dict | None = None, count: int = 8, seed: int = 0, tolerance_db: float = choice.TOLERANCE_DB,
         max_calls: int | None = None, model: str | None = None, batch_size: int = 8, input: str = "in memory",
         show_progress: bool = True) -> dict:
    """Tune ``task`` on ``sources`` in this process; returns the record (:mod:`fcs.tuning.record`).
    ``run``, ``base``, ``through_decoder``: the task's function, sampler defaults and whether its
    constraint goes through the decoder (``pipeline.tasks.TASKS[task]``); ``options``: its checked
    options; ``specs``: candidates (None: the default grid); ``held``: sampler fields held fixed."""
    made = make_problems(task, list(sources), options or {}, count, seed, denoiser.min_side())
    if not made.problems:
        raise ValueError(f"no problem could be made from {len(sources)} item(s): {dict(made.skipped)}")
    chosen = candidate_specs.resolve(specs, base, through_decoder, held)
    plan = [{"name": c.name, "preset": c.preset, "changes": dict(c.changes), "settings": config.to_dict(),
             "nfe_per_item": config.nfe_per_item} for c, config in chosen]
    results = sample_problems(denoiser, run, made.problems, [config for _, config in chosen], options, batch_size,
                              show_progress=show_progress)
    truth = {p.id: (p.truth, p.region) for p in made.problems}
    entries, valid = evaluate(plan, [p.id for p in made.problems], results, truth)
    return make_record(
        task=task, task_options=options or {}, model=model or denoiser.name, entries=entries, valid=valid,
        sources={p.id: p.source for p in made.problems},
        items={"read": len(made.problems) + sum(made.skipped.values()), "skipped": dict(made.skipped),
               "problems": len(made.problems)},
        held=held or {}, tolerance_db=tolerance_db, max_calls=max_calls, input=input,
        hardware={"device": str(denoiser.device), "dtype": str(denoiser.dtype).replace("torch.", ""),
                  "actors": 1, "batch_size": batch_size})
