"""Every sampler against the exact posterior: priors whose p(x0 | y) is known (``fcs.oracles``).

    python benchmarks/oracle.py                  # all oracles, tasks and settings (resumable)
    python benchmarks/oracle.py --problems 1     # quicker

Oracles: ``oracle-gauss`` (32² RGB pixels), ``oracle-latent`` (64² pixels, 4 × 16² latents through a
linear decoder), ``oracle-mix`` (32² RGB, three such pixel priors mixed: a multimodal posterior over
images), ``oracle-gmm`` in 8 and 80 dimensions. Tasks: box and strokes (latent-mask
inpainting), scattered pixels (70 % missing; through the decoder on the latent oracle) and ×2
super-resolution (through the decoder); the mixture observes its first coordinate (a multimodal
posterior). Settings: Newton as the paper sets it (``paper``), the ``fast`` preset, a K sweep at S = 20,
the conjugate-gradient inner solver (``cg S K``, ``inner="cg"``; the ``cg`` preset is S16 K2 for masks
and S20 K4 through the decoder), DPS at S = 20 and at the paper's NFE, replacement, unconstrained DDIM,
and exact posterior samples (the noise floor of each metric). Per problem, N = 64 samples; metrics:

- ``err``: N·‖m̂ − m‖² / tr Σ_post, the sample mean's error against the exact posterior mean in units
  of its own sampling noise (≈ 1 for an exact sampler; "—" where Σ_post is 0, i.e. the observation
  pins x0 down);
- ``rmse``: ‖m̂ − m‖ / √d in model space (defined everywhere);
- ``spread``: mean over samples of ‖x − m‖² / tr Σ_post (1 = exact; < 1 samples too alike);
- ``var``: mean log ratio of sample to exact per-element variance (0 = calibrated, < 0 over-confident);
- ``sw``: sliced Wasserstein-2 distance to 64 exact posterior samples (the exact row: two exact sets);
- ``psnr``: hole PSNR (whole image for SR) of the samples against the true image; the exact row's
  ``psnr_mean`` is the exact posterior mean's (the ceiling of a mean estimate);
- ``modes`` (mixtures): total variation between the share of samples per component and the exact
  posterior weights (``oracle-gmm``: each sample's nearest component; ``oracle-mix``: the mean of its
  responsibilities p(k | x0), which for exact samples is the posterior weight in expectation).

Journal: benchmarks/results/oracle.jsonl (one line per oracle, task, problem and setting; a rerun
skips what is there); tables: oracle.md, oracle.json; figure: oracle.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

RESULTS = HERE / "results"
JOURNAL = RESULTS / "oracle.jsonl"
SAMPLES = 64
SIDES = {"oracle-gauss": 32, "oracle-latent": 64, "oracle-mix": 32}
IMAGE_TASKS = ("box", "strokes", "pixels", "sr2")
MIXTURES = {"oracle-gmm-8": 8, "oracle-gmm-80": 80}
PAPER_NFE = {"sr2": 420}  # paper Newton's calls per item; 220 elsewhere

log = logging.getLogger("oracle")


def settings(task: str) -> dict[str, tuple[str, dict]]:
    """name -> (method, SamplerConfig fields) for one task (super-resolution: the paper's K = 10, lr 0.1)."""
    from dataclasses import asdict

    from fcs import SamplerConfig
    from fcs.presets import with_preset
    from fcs.tasks.superres import SR_DEFAULTS

    sr = task == "sr2"
    base = SR_DEFAULTS if sr else SamplerConfig()
    defaults = asdict(SamplerConfig())

    def differs(config: SamplerConfig) -> dict:
        return {k: v for k, v in asdict(config).items()
                if v != defaults[k] and k in ("steps", "newton_steps", "lr", "inner", "spacing", "solver")}

    lr = {"lr": 0.1} if sr else {}
    out = {"newton paper": ("newton", differs(with_preset(base, "paper"))),
           "newton fast": ("newton", differs(with_preset(base, "fast"))),
           "calibrated": ("newton", differs(with_preset(base, "calibrated", through_decoder=sr)))}
    out |= {f"newton S20 K{k}": ("newton", {"newton_steps": k, **lr}) for k in (1, 2, 3)}
    out |= {f"cg S{s} K{k}": ("newton", {"steps": s, "newton_steps": k, "inner": "cg"})
            for s, k in ((20, 1), (16, 2), (10, 4), (20, 3), (20, 4))}
    out["cg S16 K2 2m"] = ("newton", {"steps": 16, "newton_steps": 2, "inner": "cg", "spacing": "logsnr",
                                      "solver": "2m"})  # the cg preset's calls with the calibrated outer steps
    out |= {"dps S20": ("dps", {}), f"dps S{PAPER_NFE.get(task, 220)}": ("dps", {"steps": PAPER_NFE.get(task, 220)})}
    out["replacement S20"] = ("replacement", {})  # latent-mask tasks only (skipped where there is no mask)
    out["ddim S20 (unconstrained)"] = ("ddim", {})
    return out


def image_problem(den, task: str, p: int):
    """(truth (1, 3, H, W) float32, constraint for one item, judged region (1, 1, H, W))."""
    from fcs import noise
    from fcs.constraints import LatentInpaint, PixelInpaint, SuperResolution, downsample
    from jobs.demo import make_mask

    side = SIDES[den.name]
    truth = den.decode(den.prior.sample(noise.generators([1000 + p]), den.latent_shape(side, side)).float())
    if task == "sr2":
        return truth, SuperResolution(den.decode, downsample(truth, 2), 2), torch.ones(1, 1, side, side)
    if task == "pixels":
        mask = (torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(p)) < 0.7).float()
    else:
        mask = torch.from_numpy(make_mask(task, side, seed=p) > 127).float()[None, None]
    if task == "pixels" and den.is_latent:  # scattered pixels leave no whole latent cell known
        return truth, PixelInpaint(den.decode, truth, mask), mask
    constraint = LatentInpaint.from_pixels(den, truth, mask)
    return truth, constraint, mask


def expand(constraint, n: int):
    """The same one-item constraint for n samples."""
    from fcs.constraints import LatentInpaint, PixelInpaint, SuperResolution

    if isinstance(constraint, LatentInpaint):
        return LatentInpaint(constraint.target.expand(n, -1, -1, -1), constraint.known.expand(n, -1, -1, -1))
    if isinstance(constraint, PixelInpaint):
        return PixelInpaint(constraint.decode, constraint.image.expand(n, -1, -1, -1),
                            1 - constraint.keep.expand(n, -1, -1, -1))
    return SuperResolution(constraint.decode, constraint.low_res.expand(n, -1, -1, -1), constraint.scale)


def draw(den, constraint, method: str, fields: dict, shape, seed: int) -> tuple[torch.Tensor, float, float]:
    """(samples (N, 1, ...) float64, NFE per item, seconds per item) of one setting."""
    from fcs import SAMPLERS, SamplerConfig, noise

    config = SamplerConfig(method=method, **fields)
    gens = noise.generators(range(seed, seed + SAMPLES))
    started = time.perf_counter()
    with torch.set_grad_enabled(method == "dps"):
        result = SAMPLERS[method](den, expand(constraint, SAMPLES), noise.randn(shape, gens), None,
                                  steps=config.steps, gens=gens, **config.sampler_options())
    seconds = (time.perf_counter() - started) / SAMPLES
    return result.x0.detach().double()[:, None], float(result.nfe.float().mean()), seconds


def score(den, post, samples: torch.Tensor, exact: torch.Tensor, truth, region) -> dict:
    from fcs.oracles import ImageMixture
    from fcs.oracles.metrics import (
        mode_weight_error,
        normalised_mean_error,
        psnr,
        sliced_wasserstein,
        spread,
        variance_log_ratio,
    )

    d = samples[0, 0].numel()
    trace = float(post.var.sum())
    row = {"rmse": float((samples.mean(0) - post.mean).pow(2).sum().div(d).sqrt()),
           "err": float(normalised_mean_error(samples, post.mean, post.var.flatten(1).sum(1))) if trace > 1e-9 * d
           else None,
           "var": float(variance_log_ratio(samples, post.var)) if trace > 1e-9 * d else None,
           "spread": float(spread(samples, post.mean, post.var.flatten(1).sum(1))) if trace > 1e-9 * d else None,
           "sw": float(sliced_wasserstein(samples, exact))}
    if truth is not None:
        with torch.no_grad():
            images = den.decode(samples[:, 0].float())
        row["psnr"] = float(psnr(images, truth[0], region[0]).mean())
    if isinstance(den.prior, ImageMixture):  # the image mixture: each sample's share of the components
        row["modes"] = float(mode_weight_error(den.prior.responsibilities(samples[:, 0])[:, None], post.weights))
    return row


def run_image(name: str, task: str, p: int, done: set, journal) -> None:
    from fcs import noise
    from fcs.oracles import load_oracle
    from fcs.oracles.metrics import psnr

    den = load_oracle(name)
    truth, constraint, region = image_problem(den, task, p)
    shape = tuple(constraint.target.shape[1:]) if hasattr(constraint, "known") else \
        den.latent_shape(*truth.shape[-2:])
    post = den.posterior(constraint)
    exact = post.sample(noise.generators(range(50_000, 50_000 + SAMPLES)))
    key = (name, task, p)
    if (*key, "exact") not in done:
        floor = post.sample(noise.generators(range(60_000, 60_000 + SAMPLES)))
        row = score(den, post, floor, exact, truth, region)
        with torch.no_grad():
            row["psnr_mean"] = float(psnr(den.decode(post.mean.float()), truth, region).mean())
        write(journal, key, "exact", row | {"nfe": 0, "seconds": 0.0})
    for setting, (method, fields) in settings(task).items():
        if (*key, setting) in done or (method == "replacement" and not hasattr(constraint, "known")):
            continue
        samples, nfe, seconds = draw(den, constraint, method, fields, shape, seed=10_000 * p)
        write(journal, key, setting, score(den, post, samples, exact, truth, region) | {"nfe": nfe, "seconds": seconds})


def run_mixture(name: str, p: int, done: set, journal) -> None:
    from fcs import noise
    from fcs.constraints import LatentInpaint
    from fcs.oracles import load_oracle
    from fcs.oracles.metrics import mode_weight_error

    den = load_oracle("oracle-gmm", dim=MIXTURES[name])
    x = den.prior.sample(noise.generators([1000 + p])).float()
    known = torch.zeros_like(x)
    known[..., 0] = 1  # observe the first coordinate: several modes stay possible
    constraint = LatentInpaint(x, known)
    post = den.posterior(constraint)
    exact = post.sample(noise.generators(range(50_000, 50_000 + SAMPLES)))
    key = (name, "coord0", p)

    def modes(samples: torch.Tensor) -> float:
        nearest = den.prior.nearest_component(samples[:, 0])
        return float(mode_weight_error(torch.nn.functional.one_hot(nearest, post.weights.shape[1])[:, None],
                                       post.weights))

    if (*key, "exact") not in done:
        floor = post.sample(noise.generators(range(60_000, 60_000 + SAMPLES)))
        write(journal, key, "exact", score(den, post, floor, exact, None, None) |
              {"modes": modes(floor), "nfe": 0, "seconds": 0.0})
    for setting, (method, fields) in settings("coord0").items():
        if (*key, setting) in done:
            continue
        samples, nfe, seconds = draw(den, constraint, method, fields, tuple(x.shape[1:]), seed=10_000 * p)
        write(journal, key, setting, score(den, post, samples, exact, None, None) |
              {"modes": modes(samples), "nfe": nfe, "seconds": seconds})


def write(journal, key: tuple, setting: str, row: dict) -> None:
    oracle, task, p = key
    entry = {"oracle": oracle, "task": task, "problem": p, "setting": setting, **row}
    journal.write(json.dumps(entry) + "\n")
    journal.flush()
    log.info("%s %s #%d %-24s %s", oracle, task, p, setting,
             " ".join(f"{k}={v:.3g}" for k, v in row.items() if isinstance(v, float)))


def read_journal() -> list[dict]:
    from journal import read

    return read(JOURNAL)


def summarise(rows: list[dict]) -> dict:
    """Mean of each metric over problems, per (oracle, task, setting)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["oracle"], r["task"], r["setting"]), []).append(r)
    out = {}
    for (oracle, task, setting), rs in groups.items():
        means = {}
        for metric in ("err", "rmse", "spread", "var", "sw", "psnr", "psnr_mean", "modes", "nfe", "seconds"):
            values = [r[metric] for r in rs if r.get(metric) is not None]
            means[metric] = float(np.mean(values)) if values and len(values) == len(rs) else None
        out.setdefault(oracle, {}).setdefault(task, {})[setting] = means | {"problems": len(rs)}
    return out


def _cell(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict) -> str:
    lines = ["# Samplers against the exact posterior (`python benchmarks/oracle.py`)", "",
             f"N = {SAMPLES} samples per problem; means over problems. `err` ≈ 1 and `var` ≈ 0 for an exact "
             "sampler (`spread` ≈ 1); the `exact` row holds the noise floor of each metric (two independent exact "
             "sample sets) "
             "and, in `psnr`, the exact posterior mean's PSNR in brackets.", ""]
    for oracle, tasks in summary.items():
        lines += [f"## {oracle}", ""]
        mixture = oracle.startswith("oracle-gmm")
        modes = oracle == "oracle-mix"  # both: images, and a multimodal posterior
        head = ("| task | setting | NFE | err | rmse | spread | var | sw | " + ("modes |" if mixture else "PSNR dB |")
                + (" modes |" if modes else ""))
        lines += [head, "|---" * (head.count("|") - 1) + "|"]
        for task, rows in tasks.items():
            for setting, m in sorted(rows.items(), key=lambda kv: (kv[0] != "exact", kv[1]["nfe"] or 0, kv[0])):
                last = _cell(m["modes"], 3) if mixture else (
                    f"{_cell(m['psnr'])} ({_cell(m['psnr_mean'])})" if setting == "exact" else _cell(m["psnr"]))
                lines.append(f"| {task} | {setting} | {m['nfe']:.0f} | {_cell(m['err'], 1)} | {_cell(m['rmse'], 4)} "
                             f"| {_cell(m['spread'])} | {_cell(m['var'])} | {_cell(m['sw'], 4)} | {last} |" +
                             (f" {_cell(m['modes'], 3)} |" if modes else ""))
        lines.append("")
    return "\n".join(lines)


COMPACT = ("newton paper", "newton fast", "cg S16 K2", "cg S20 K4", "calibrated", "dps S20", "replacement S20",
           "ddim S20 (unconstrained)")


def compact(summary: dict) -> str:
    """The compact table of docs/results.md: the sample-mean error ``err`` (NFE in brackets; ``rmse`` ×1000 in square
    brackets where Σ_post = 0) per oracle and task for the main settings, and the exact samples' own
    value (the floor)."""
    head = "| oracle | task | exact | " + " | ".join(COMPACT) + " |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for oracle, tasks in summary.items():
        for task, rows in tasks.items():
            cells = [_compact_cell(rows.get(setting)) for setting in ("exact", *COMPACT)]
            lines.append(f"| {oracle} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration(summary: dict) -> str:
    """The calibration table of docs/results.md: per oracle, task and main setting, ``err / spread / var``
    and, on the mixtures, ``/ modes`` (the exact samples' own values first)."""
    head = "| oracle | task | " + " | ".join(("exact", *COMPACT)) + " |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]

    def cell(m: dict | None) -> str:
        if m is None:
            return "n/a"
        parts = [_cell(m["err"], 1), _cell(m["spread"]), _cell(m["var"])]
        return " / ".join(parts + ([_cell(m["modes"], 3)] if m.get("modes") is not None else []))

    for oracle, tasks in summary.items():
        for task, rows in tasks.items():
            lines.append(f"| {oracle} | {task} | " + " | ".join(cell(rows.get(s)) for s in ("exact", *COMPACT)) + " |")
    return "\n".join(lines)


def _compact_cell(m: dict | None) -> str:
    if m is None:
        return "n/a"
    value = _cell(m["err"], 1) if m["err"] is not None else f"[{1000 * m['rmse']:.1f}]"
    return f"{value} ({m['nfe']:.0f})" if m["nfe"] else value


BAR = {"err": 2.0, "spread": (0.85, 1.2), "modes": 0.15}  # a calibrated sampler at <= 50 calls per item
BAR_SETTINGS = ("cg S16 K2", "calibrated")
MASK_TASKS = ("box", "strokes", "coord0")  # latent-mask rows: the constraint is exact in model space


def bar(summary: dict) -> str:
    """Each 48-call setting of :data:`BAR_SETTINGS` against :data:`BAR` on every latent-mask row: the
    value, and by how much it misses (blank where it passes)."""
    lo, hi = BAR["spread"]
    head = "| oracle | task | setting | NFE | err (≤ 2) | spread (0.85–1.2) | modes (≤ 0.15) |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]

    def cell(value, miss):
        return "—" if value is None else f"{value:.2f}" + (f" (misses by {miss:.2f})" if miss > 0 else "")

    for oracle, tasks in summary.items():
        for task in (t for t in tasks if t in MASK_TASKS):
            for setting in BAR_SETTINGS:
                m = tasks[task].get(setting)
                if m is None:
                    continue
                err, spread, modes = m["err"], m["spread"], m["modes"]
                lines.append(f"| {oracle} | {task} | {setting} | {m['nfe']:.0f} "
                             f"| {cell(err, (err or 0) - BAR['err'])} "
                             f"| {cell(spread, max(lo - spread, spread - hi) if spread is not None else 0)} "
                             f"| {cell(modes, (modes or 0) - BAR['modes'])} |")
    return "\n".join(lines)


def figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(o, t) for o, tasks in summary.items() for t in tasks]
    cols = min(5, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (oracle, task) in zip(axes.flat, panels, strict=False):
        for setting, m in summary[oracle][task].items():
            value = m["err"] if m["err"] is not None else m["rmse"]
            if setting == "exact" or value is None:
                continue
            marker = {"newton": "o", "cg": "D", "calibrated": "*", "dps": "s", "replacement": "^",
                      "ddim": "x"}[setting.split()[0]]
            ax.scatter(m["nfe"], value, marker=marker, label=setting)
        exact = summary[oracle][task].get("exact", {})
        if exact.get("err") is not None:
            ax.axhline(exact["err"], color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([20, 60, 220, 420], ["20", "60", "220", "420"], fontsize=7)
        ax.minorticks_off()
        ax.set_title(f"{oracle}\n{task}", fontsize=8)
        ax.set_xlabel("NFE per item", fontsize=8)
    for row in axes:
        row[0].set_ylabel("err (rmse where Σ_post = 0)", fontsize=8)
    fullest = max(axes.flat, key=lambda a: len(a.get_legend_handles_labels()[1]))
    axes[0][-1].legend(*fullest.get_legend_handles_labels(), fontsize=6, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=3, help="problems per oracle and task")
    parser.add_argument("--oracles", default=",".join([*SIDES, *MIXTURES]))
    parser.add_argument("--tasks", default=",".join(IMAGE_TASKS))
    parser.add_argument("--report", action="store_true", help="only rebuild the tables and figure from the journal")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    RESULTS.mkdir(exist_ok=True)
    done = {(r["oracle"], r["task"], r["problem"], r["setting"]) for r in read_journal()}
    with JOURNAL.open("a") as journal:
        if args.report:
            args.problems = 0
        for p in range(args.problems):
            for name in args.oracles.split(","):
                if name in MIXTURES:
                    run_mixture(name, p, done, journal)
                    continue
                for task in args.tasks.split(","):
                    run_image(name, task, p, done, journal)
    summary = summarise(read_journal())
    (RESULTS / "oracle.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "oracle.md").write_text(markdown(summary) + "\n\n## Compact (the table of docs/results.md)\n\n" +
                                       compact(summary) + "\n\n## Calibration: err / spread / var (/ modes)\n\n" +
                                       calibration(summary) +
                                       "\n\n## The 48-call settings against the calibration bar\n\n" +
                                       bar(summary) + "\n")
    figure(summary, RESULTS / "oracle.png")
    print(markdown(summary))


if __name__ == "__main__":
    main()
