"""The tuner checked on held-out data: settings chosen on training images, measured on images it never saw.

    python benchmarks/tuning.py                                   # both trained models and both oracles
    python benchmarks/tuning.py --models digits oracle-gauss      # some of them (resumable)
    python benchmarks/tuning.py --report                          # only the tables, from the journal

Task: restore (no masks given, so the tuner hides its box and stroke holes). For each model the tuner
(:func:`fcs.tuning.local.tune`, default candidates) chooses on training images, then every candidate
runs on held-out ones:

- ``photo`` (trained, latent): tuned on centre crops of 16 training photos, held out: 16 crops of the
  4 held-out photos (``held_out_crops(128, per_photo=4)``); measure: hole PSNR (same problem rule, seed 0).
- ``digits`` (trained, pixel space): 160 training digits / 160 of the 300 held-out digits, as above.
- ``oracle-gauss`` (32² RGB) and ``oracle-latent`` (64², linear decoder): tuned by hole PSNR on 32 images
  drawn from the oracle's prior (as a user would tune); held out: 24 other prior draws with box or strokes
  holes (``benchmarks/oracle.py``'s problems 100-123), measure: ``err``, the sample mean's error against the
  exact posterior mean over 32 samples in units of its own noise (1 = exact; lower is better).

The choice is made from the training numbers by the tuner's own rule (:func:`fcs.tuning.choice.choose`)
at each tolerance of :data:`TOLERANCES`, so one run shows what the tolerance does. The bar (the issue's
acceptance): the chosen candidate's held-out PSNR within 0.3 dB of the best candidate's on the held-out
images; on the oracles its ``err`` at most 1.2 × the best candidate's. For the PSNR models the table also
gives the 95 % paired bootstrap interval of that gap (same held-out problems and seeds), the resolution
the held-out data has. Journal: benchmarks/results/tuning.jsonl (one line per model, phase and candidate;
a rerun skips what is there); tables: tuning.md, tuning.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"
JOURNAL = RESULTS / "tuning.jsonl"
TASK = "restore"
MODELS = ("photo", "digits", "oracle-gauss", "oracle-latent")
ORACLE_TRAIN = 32  # prior draws the oracles are tuned on (seeds TRAIN_SEED + i)
TRAIN_SEED = 7000
# oracle.py's image_problem numbers (prior seeds 1100-1123, box and strokes holes): with 3 the held-out err
# ranked candidates differently from any 12 others; 24 split in halves rank alike
HELD_PROBLEMS = tuple(range(100, 124))
TRAIN_IMAGES = {"photo": 16, "digits": 160}
HELD_DIGITS = 160  # of the 300
HELD_CROPS_PER_PHOTO = 4
TOLERANCES = (0.0, 0.1, 0.3)  # dB, the rule's tolerance, each applied to the same training numbers
SAMPLES = 32  # posterior samples per held-out oracle problem
BAR_DB = 0.3
BAR_ERR = 1.2
RULE = (f"PASS: the chosen candidate's held-out hole PSNR is within {BAR_DB} dB of the best candidate's on the "
        f"held-out images (oracles: its held-out err is at most {BAR_ERR} x the best candidate's err).")


# -- the images ----------------------------------------------------------------------------------
def held_out_sources(model: str) -> list:
    from recommend import gray_rgb

    from fcs.tuning import Source

    if model == "digits":
        from digits import held_out_digits

        return [Source(f"held-{i}", gray_rgb(x)) for i, x in enumerate(held_out_digits(HELD_DIGITS))]
    from fcs.photos import held_out_crops

    return [Source(f"held-{i}", crop) for i, crop in enumerate(held_out_crops(128, HELD_CROPS_PER_PHOTO))]


def oracle_sources(den) -> list:
    """Training images of an oracle: draws from its prior, uint8 RGB."""
    from oracle import SIDES

    from fcs import noise
    from fcs.images import tensor_to_rgb
    from fcs.tuning import Source

    side = SIDES[den.name]
    out = []
    for i in range(ORACLE_TRAIN):
        latent = den.prior.sample(noise.generators([TRAIN_SEED + i]), den.latent_shape(side, side))
        out.append(Source(f"prior-{TRAIN_SEED + i}", tensor_to_rgb(den.decode(latent.float())[0].clamp(0, 1))))
    return out


# -- the phases ----------------------------------------------------------------------------------
def train(den, model: str) -> dict:
    """The tuning record on training images (more of them than the model's shipped record uses)."""
    from recommend import training_sources, tune_task

    sources = oracle_sources(den) if model.startswith("oracle") else training_sources(model, TRAIN_IMAGES[model])
    return tune_task(den, model, TASK, sources, show_progress=False)


def held_out_psnr(den, sources: list, plan: dict, config) -> dict:
    """One candidate's entry (:func:`fcs.tuning.evaluate.evaluate`) on problems from ``sources``."""
    from fcs.tuning.evaluate import evaluate
    from fcs.tuning.local import sample_problems
    from fcs.tuning.problems import make_problems

    made = make_problems(TASK, sources, {}, len(sources), 0, den.min_side())
    results = sample_problems(den, _task().run, made.problems, [config], show_progress=False)
    truth = {p.id: (p.truth, p.region) for p in made.problems}
    entries, _ = evaluate([plan], [p.id for p in made.problems], results, truth)
    e = entries[0]
    return {"psnr": e["psnr"]["mean"] if e["psnr"] else None, "calls": e["calls"], "complete": e["complete"],
            "problems": e["ok"], "per_problem": {p: v["psnr"] for p, v in e["per_problem"].items()}}


def oracle_problems(den) -> list[tuple]:
    """The held-out oracle problems: (number, truth, constraint, region, exact posterior mean, tr Σ_post) each
    (``var`` is recomputed from the dense covariance on every access: read it once)."""
    from oracle import image_problem

    out = []
    for p in HELD_PROBLEMS:
        truth, constraint, region = image_problem(den, ("box", "strokes")[p % 2], p)
        post = den.posterior(constraint)
        out.append((p, truth, constraint, region, post.mean, post.var.flatten(1).sum(1)))
    return out


def held_out_err(den, problems: list[tuple], config) -> dict:
    """One candidate's mean ``err`` (and hole PSNR of its samples) over the held-out oracle problems."""
    from fcs.oracles.metrics import normalised_mean_error, psnr

    errs, psnrs, calls = [], [], []
    for p, truth, constraint, region, mean, trace in problems:
        samples, nfe = _draw(den, constraint, config, 10_000 * p)
        errs.append(float(normalised_mean_error(samples, mean, trace)))
        with torch.no_grad():
            psnrs.append(float(psnr(den.decode(samples[:, 0].float()), truth[0], region[0]).mean()))
        calls.append(nfe)
    return {"err": float(np.mean(errs)), "psnr": float(np.mean(psnrs)), "calls": float(np.mean(calls)),
            "problems": len(problems)}


def _draw(den, constraint, config, seed: int) -> tuple[torch.Tensor, float]:
    """(SAMPLES samples (N, 1, ...) float64, NFE per item) of ``config`` on a one-item constraint."""
    from oracle import expand

    from fcs import SAMPLERS, noise

    gens = noise.generators(range(seed, seed + SAMPLES))
    shape = tuple(constraint.target.shape[1:])
    with torch.set_grad_enabled(config.method == "dps"):
        result = SAMPLERS[config.method](den, expand(constraint, SAMPLES), noise.randn(shape, gens), None,
                                         steps=config.steps, gens=gens, **config.sampler_options())
    return result.x0.detach().double()[:, None], float(result.nfe.float().mean())


def _task():
    from pipeline.tasks import TASKS

    return TASKS[TASK]


# -- the run -------------------------------------------------------------------------------------
def run_model(model: str, done: dict, journal) -> None:
    from recommend import load_model

    from fcs.oracles import load_oracle
    from fcs.tuning import candidates

    oracle = model.startswith("oracle")
    den = load_oracle(model) if oracle else load_model(model)
    spec = _task()
    resolved = candidates.resolve(None, spec.sampler, spec.through_decoder)
    if not all((model, "train", c.name) in done for c, _ in resolved):
        started = time.perf_counter()
        record = train(den, model)
        seconds = round(time.perf_counter() - started, 1)
        for c in record["candidates"]:
            write(journal, done, model, "train", c["name"],
                  {key: c[key] for key in ("calls", "complete", "psnr", "detail")} |
                  {"problems": c["ok"], "seconds": seconds})
    todo = [(c, config) for c, config in resolved if (model, "held-out", c.name) not in done]
    if not todo:
        return
    problems = oracle_problems(den) if oracle else held_out_sources(model)
    for c, config in todo:
        started = time.perf_counter()
        if oracle:
            row = held_out_err(den, problems, config)
        else:
            plan = {"name": c.name, "preset": c.preset, "changes": dict(c.changes), "settings": config.to_dict(),
                    "nfe_per_item": config.nfe_per_item}
            row = held_out_psnr(den, problems, plan, config)
        write(journal, done, model, "held-out", c.name, row | {"seconds": round(time.perf_counter() - started, 1)})


def write(journal, done: dict, model: str, phase: str, candidate: str, row: dict) -> None:
    entry = {"model": model, "phase": phase, "candidate": candidate, **row}
    journal.write(json.dumps(entry) + "\n")
    journal.flush()
    done[(model, phase, candidate)] = entry
    shown = {k: v["mean"] if isinstance(v, dict) and "mean" in v else v for k, v in row.items()}
    print(f"{model} {phase} {candidate:24s} " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()
                                                          if isinstance(v, float)), file=sys.stderr, flush=True)


def read_journal() -> dict:
    rows = [json.loads(line) for line in JOURNAL.read_text().splitlines()] if JOURNAL.exists() else []
    return {(r["model"], r["phase"], r["candidate"]): r for r in rows}


# -- the tables ----------------------------------------------------------------------------------
def summarise(done: dict) -> dict:
    """Per model and tolerance: the rule's choice on the training numbers, its held-out number, the best
    held-out candidate's, the gap (PSNR models: with its paired 95 % interval) and the verdict."""
    from fcs.tuning import choice

    out = {}
    for model in MODELS:
        trained = {c: r for (m, phase, c), r in done.items() if m == model and phase == "train"}
        held = {c: r for (m, phase, c), r in done.items() if m == model and phase == "held-out"}
        if not trained or set(held) != set(trained):
            continue
        oracle = model.startswith("oracle")
        metric = "err" if oracle else "psnr"
        usable = {c: r for c, r in held.items() if r.get(metric) is not None and r.get("complete", True)}
        best = (min if oracle else max)(usable, key=lambda c: usable[c][metric])
        entries = [{"name": c, **r} for c, r in trained.items() if r["psnr"]]
        rows = {}
        for tolerance in TOLERANCES:
            chosen = choice.choose(entries, tolerance)["name"]
            mine, top = held[chosen][metric], usable[best][metric]
            gap = mine / top if oracle else top - mine
            rows[str(tolerance)] = {
                "chosen": chosen, "train_psnr": trained[chosen]["psnr"]["mean"], "calls": held[chosen]["calls"],
                "held": mine, "gap": gap, "gap_interval": None if oracle else _paired_gap(held[best], held[chosen]),
                "pass": bool(gap <= (BAR_ERR if oracle else BAR_DB))}
        out[model] = {"metric": metric, "best": best, "best_held": usable[best][metric],
                      "best_calls": usable[best]["calls"], "candidates": len(held),
                      "train_problems": next(iter(trained.values()))["problems"],
                      "held_problems": next(iter(held.values()))["problems"], "by_tolerance": rows,
                      "held_out": {c: r[metric] for c, r in held.items()}}
    return out


def _paired_gap(best: dict, chosen: dict) -> list[float] | None:
    """The 95 % bootstrap interval of best − chosen hole PSNR over the held-out problems both ran."""
    from fcs.tuning.scores import interval

    shared = [p for p in chosen.get("per_problem", {}) if p in best.get("per_problem", {})]
    if not shared:
        return None
    return [round(v, 2) for v in interval([best["per_problem"][p] - chosen["per_problem"][p] for p in shared])]


def markdown(summary: dict) -> str:
    from fcs.tuning.choice import TOLERANCE_DB

    head = ("| model | problems (train / held out) | tolerance dB | chosen on training | calls | training PSNR dB "
            "| held-out (chosen) | best on held-out | calls | held-out (best) | gap (95 % paired) | bar |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for model, s in summary.items():
        oracle = s["metric"] == "err"
        value = (lambda v: f"err {v:.2f}") if oracle else (lambda v: f"{v:.2f} dB")
        bar = BAR_ERR if oracle else BAR_DB
        for tolerance, r in s["by_tolerance"].items():
            gap = f"{r['gap']:.2f}× best" if oracle else f"{r['gap']:.2f} dB"
            if r["gap_interval"]:
                gap += f" ({r['gap_interval'][0]:+.2f}, {r['gap_interval'][1]:+.2f})"
            verdict = "PASS" if r["pass"] else f"MISS by {r['gap'] - bar:.2f}{'×' if oracle else ' dB'}"
            default = " (default)" if float(tolerance) == TOLERANCE_DB else ""
            lines.append(f"| {model} | {s['train_problems']} / {s['held_problems']} | {tolerance}{default} | "
                         f"`{r['chosen']}` | {r['calls']:.0f} | {r['train_psnr']:.2f} | {value(r['held'])} | "
                         f"`{s['best']}` | {s['best_calls']:.0f} | {value(s['best_held'])} | {gap} | {verdict} |")
    return "\n".join(lines) + "\n\n" + RULE + (
        f" {len(next(iter(summary.values()))['held_out']) if summary else 0} candidates per model (the default grid);"
        f" oracles: {SAMPLES} samples per held-out problem (err, 1 = exact).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="only rebuild the tables from the journal")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    done = read_journal()
    if not args.report:
        with JOURNAL.open("a") as journal:
            for model in args.models:
                run_model(model, done, journal)
    summary = summarise(read_journal())
    (RESULTS / "tuning.json").write_text(json.dumps(summary, indent=1) + "\n")
    table = markdown(summary)
    (RESULTS / "tuning.md").write_text("# Tuning on training images, checked on held-out ones "
                                       "(`python benchmarks/tuning.py`)\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
