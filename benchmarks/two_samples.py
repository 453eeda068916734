"""Two samples per item: scoring fills by how they vary as well as by how close one comes.

    python benchmarks/two_samples.py            # resumable; --report rebuilds the tables from the journal

One sample's hole PSNR rewards fills near the posterior mean, so a sampler whose samples are too alike
can beat an exact one on it. Two independent samples x1, x2 of the same item against its truth y give
two numbers that do not have that flaw (distances are RMS over the hole's pixels and channels):

- the **energy score** ½(‖x1 − y‖ + ‖x2 − y‖) − ½‖x1 − x2‖, a proper scoring rule: its expectation is
  lowest for samples from the true posterior (lower is better);
- the **pair ratio** mean ‖x1 − x2‖² / mean ½(‖x1 − y‖² + ‖x2 − y‖²): y is itself a draw from the
  posterior given the kept pixels, so samples as varied as the truth score 1, too-alike ones less.

Run first on the exact-posterior oracles (32 problems × 2 samples per task; the exact sampler's row says
what a perfect sampler scores), then on both trained models' held-out items (64 digits, 16 photo crops).
Journal: benchmarks/results/two_samples.jsonl (one line per model, task and setting);
tables in benchmarks/results/two_samples.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from journal import read as journal_entries  # noqa: E402

RESULTS = HERE / "results"
JOURNAL = RESULTS / "two_samples.jsonl"
ORACLE_PROBLEMS = 32
MODELS = {"oracle-gauss": ("box", "strokes"), "oracle-latent": ("box", "strokes"),
          "digits": ("box", "half"), "photo": ("box", "strokes")}
ITEMS = {"digits": 64, "photo": 16}
SETTINGS = ("cg", "calibrated", "fast")  # presets; the oracles also get the exact posterior's samples
SECOND = 100_000  # seed offset of each item's second sample


def per_item(x1: torch.Tensor, x2: torch.Tensor, truth: torch.Tensor, hole: torch.Tensor) -> dict:
    """Per-item arrays: one-sample hole PSNR (both samples), energy score, the pair's squared distances."""
    count = (hole.flatten(1).sum(1) * truth.shape[1]).clamp_min(1)

    def sq(a, b):
        return ((a - b) ** 2 * hole).flatten(1).sum(1) / count

    d1, d2, d12 = sq(x1, truth), sq(x2, truth), sq(x1, x2)
    psnr = 10 * torch.log10(1 / torch.cat([d1, d2]).clamp_min(1e-10)).view(2, -1).mean(0)
    energy = 0.5 * (d1.sqrt() + d2.sqrt()) - 0.5 * d12.sqrt()
    return {k: v.double().numpy() for k, v in
            {"psnr": psnr, "energy": energy, "pair": d12, "to_truth": 0.5 * (d1 + d2)}.items()}


def oracle_rows(name: str, task: str, settings: list[str]) -> dict[str, dict]:
    from oracle import expand, image_problem

    from fcs import SAMPLERS, SamplerConfig, noise
    from fcs.oracles import load_oracle
    from fcs.presets import with_preset

    den = load_oracle(name)
    pairs = {s: [] for s in settings}
    for p in range(ORACLE_PROBLEMS):
        truth, constraint, hole = image_problem(den, task, p)
        shape = tuple(constraint.target.shape[1:])
        for setting in settings:
            gens = noise.generators([p, SECOND + p])
            if setting == "exact":
                x0 = den.posterior(constraint).sample(gens).float().reshape(2, *shape)
            else:
                config = with_preset(SamplerConfig(), setting)
                with torch.no_grad():
                    x0 = SAMPLERS["newton"](den, expand(constraint, 2), noise.randn(shape, gens), None,
                                            steps=config.steps, gens=gens, **config.sampler_options()).x0.float()
            with torch.no_grad():
                images = den.decode(x0)
            pairs[setting].append(per_item(images[:1], images[1:], truth, hole))
    return {s: {k: np.concatenate([r[k] for r in rows]) for k in rows[0]} for s, rows in pairs.items()}


def model_rows(model: str, task: str, settings: list[str]) -> dict[str, dict]:
    from dataclasses import asdict

    from frontier import hole_mask, load, sample

    from fcs import SamplerConfig
    from fcs.presets import with_preset

    den, truth = load(model, ITEMS[model])
    hole = hole_mask(task, truth)
    out = {}
    for setting in settings:
        fields = {k: v for k, v in asdict(with_preset(SamplerConfig(), setting)).items() if k != "method"}
        x1, *_ = sample(den, task, truth, "newton", fields)
        x2, *_ = sample(den, task, truth, "newton", fields, seed=SECOND)
        out[setting] = per_item(x1, x2, truth, hole)
    return out


def summarise(model: str, task: str, setting: str, item: dict, base: dict) -> dict:
    """Means with 95 % intervals; the energy score's paired difference to ``cg`` (bootstrap over items)."""
    n = len(item["energy"])
    rng = np.random.default_rng(0)
    draws = rng.integers(0, n, (2000, n))
    diff = item["energy"] - base["energy"]
    pair = item["pair"][draws].mean(1) / item["to_truth"][draws].mean(1)
    return {"model": model, "task": task, "setting": setting, "items": n,
            "psnr": float(item["psnr"].mean()), "psnr_ci": float(1.96 * item["psnr"].std(ddof=1) / np.sqrt(n)),
            "energy": float(item["energy"].mean()),
            "energy_vs_cg": [float(diff.mean()), *map(float, np.quantile(diff[draws].mean(1), [0.025, 0.975]))],
            "pair_ratio": float(item["pair"].mean() / item["to_truth"].mean()),
            "pair_ratio_ci": [float(q) for q in np.quantile(pair, [0.025, 0.975])]}


def run(done: set, journal) -> None:
    for model, tasks in MODELS.items():
        oracle = model.startswith("oracle")
        settings = (["exact"] if oracle else []) + list(SETTINGS)
        for task in tasks:
            if (model, task) in done:
                continue
            items = oracle_rows(model, task, settings) if oracle else model_rows(model, task, settings)
            for setting in settings:
                row = summarise(model, task, setting, items[setting], items["cg"])
                journal.write(json.dumps(row) + "\n")
                journal.flush()
                print(json.dumps(row), file=sys.stderr, flush=True)


def table(rows: list[dict]) -> list[str]:
    lines = ["| model | task | setting | items | hole PSNR dB (one sample) | energy score (lower is better) "
             "| energy − cg (95 %) | pair ratio (1 = as varied as the truth; 95 %) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, lo, hi = r["energy_vs_cg"]
        vs = "—" if r["setting"] == "cg" else f"{d * 1000:+.2f} ({lo * 1000:+.2f}, {hi * 1000:+.2f})"
        lo_p, hi_p = r["pair_ratio_ci"]
        lines.append(f"| {r['model']} | {r['task']} | {r['setting']} | {r['items']} | {r['psnr']:.2f} ± "
                     f"{r['psnr_ci']:.2f} | {r['energy'] * 1000:.2f} | {vs} | {r['pair_ratio']:.2f} "
                     f"({lo_p:.2f}, {hi_p:.2f}) |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only rebuild the tables from the journal")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    if not args.report:
        with JOURNAL.open("a") as journal:
            run({(r["model"], r["task"]) for r in journal_entries(JOURNAL)}, journal)
    rows = journal_entries(JOURNAL)
    text = "\n".join([
        "# Two samples per item (`python benchmarks/two_samples.py`)", "",
        f"Oracles: {ORACLE_PROBLEMS} problems per task; trained models: their held-out items. Energy score and its "
        "difference to `cg` ×1000 (RMS over the hole, image in [0, 1]).", "",
        *table(rows), ""])
    (RESULTS / "two_samples.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
