"""Where the posterior's spread goes: the outer steps, measured where everything is exact.

    python benchmarks/spread.py            # resumable; --report rebuilds the tables from the journal

Two parts, both printed into benchmarks/results/spread.md:

1. **A Gaussian component in closed form.** For data x0 ~ N(0, v) the exact denoiser is linear, so the
   variance a sampler's x̂0 ends with (over v; 1 = exact) follows from its outer steps alone, with the
   inner solve exact: DDIM and 2m (``fcs.schedule.Schedule.second_order``) on the model's own grid and on
   the log-SNR grid (``spacing="logsnr"``), S = 16, SD's schedule.
2. **The image oracles** (``oracle-gauss``, ``oracle-latent``; box and strokes; 2 problems × 64 samples):
   the conjugate-gradient inner solve run to convergence (K = 30) under each outer scheme, then at the
   ≤ 50-call budgets. ``err`` as in benchmarks/oracle.py (1 = exact), ``spread`` = mean ‖x − m‖² / tr Σ_post
   (1 = exact), ``var`` = mean log ratio of per-element variances (0 = exact).

Journal: benchmarks/results/spread.jsonl (one line per oracle, task, problem and setting).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from journal import read as journal_entries  # noqa: E402

RESULTS = HERE / "results"
JOURNAL = RESULTS / "spread.jsonl"
ORACLES, TASKS, PROBLEMS = ("oracle-gauss", "oracle-latent"), ("box", "strokes"), 2
VARIANCES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SOLVED = 30  # inner CG steps: converged on these problems (the error stops falling well before)
SCHEMES = {  # name -> SamplerConfig fields (all with inner="cg")
    "DDIM S16, solved": {"steps": 16, "newton_steps": SOLVED},
    "DDIM S50, solved": {"steps": 50, "newton_steps": SOLVED},
    "DDIM η=1 S16, solved": {"steps": 16, "newton_steps": SOLVED, "eta": 1.0},
    "DDIM log-SNR S16, solved": {"steps": 16, "newton_steps": SOLVED, "spacing": "logsnr"},
    "2m S16, solved": {"steps": 16, "newton_steps": SOLVED, "solver": "2m"},
    "2m log-SNR S16, solved": {"steps": 16, "newton_steps": SOLVED, "spacing": "logsnr", "solver": "2m"},
    "cg preset (DDIM S16 K2)": {"steps": 16, "newton_steps": 2},
    "2m log-SNR S16 K2": {"steps": 16, "newton_steps": 2, "spacing": "logsnr", "solver": "2m"},
    "calibrated preset (2m log-SNR S12 K3)": {"steps": 12, "newton_steps": 3, "spacing": "logsnr", "solver": "2m"},
}


def component_ratio(schedule, v: float, solver: str) -> float:
    """Final Var[x̂0] / v for x0 ~ N(0, v) started from the exact x_T, exact denoiser, η = 0."""
    a, s = np.array(schedule.alphas), np.array(schedule.sigmas)
    c, previous = np.sqrt(a[0] ** 2 * v + s[0] ** 2), None  # x_t = c·z: its scale along one component
    for i in range(len(a)):
        x0, eps = a[i] * v / (a[i] ** 2 * v + s[i] ** 2) * c, None
        if i == len(a) - 1:
            return float(x0**2 / v)
        eps = (c - a[i] * x0) / s[i]
        step, step_eps = (x0, eps) if solver == "ddim" or previous is None else \
            schedule.second_order(*(np.float64(x0), np.float64(eps), np.float64(previous)), i)
        previous = x0
        c = a[i + 1] * step + s[i + 1] * step_eps
    raise AssertionError("unreachable")


def closed_form() -> list[str]:
    from fcs.oracles import load_oracle
    from fcs.samplers.loop import schedule_for

    den = load_oracle("oracle-gauss")
    head = "| outer steps (S = 16) | " + " | ".join(f"v = {v:g}" for v in VARIANCES) + " |"
    lines = [head, "|---" * (len(VARIANCES) + 1) + "|"]
    for spacing in ("model", "logsnr"):
        schedule = schedule_for(den, 16, (3, 8, 8), spacing)
        for solver in ("ddim", "2m"):
            cells = " | ".join(f"{component_ratio(schedule, v, solver):.2f}" for v in VARIANCES)
            lines.append(f"| {solver}, {spacing} grid | {cells} |")
    return lines


def run(done: set, journal) -> None:
    from oracle import draw, image_problem, score

    from fcs import noise
    from fcs.oracles import load_oracle

    for name in ORACLES:
        den = load_oracle(name)
        for task in TASKS:
            for p in range(PROBLEMS):
                truth, constraint, region = image_problem(den, task, p)
                shape = tuple(constraint.target.shape[1:])
                post = den.posterior(constraint)
                exact = post.sample(noise.generators(range(50_000, 50_000 + 64)))
                for scheme, fields in SCHEMES.items():
                    if (name, task, p, scheme) in done:
                        continue
                    samples, nfe, _ = draw(den, constraint, "newton", {"inner": "cg", **fields}, shape, 10_000 * p)
                    row = score(den, post, samples, exact, None, None)
                    entry = {"oracle": name, "task": task, "problem": p, "scheme": scheme, "nfe": nfe,
                             **{k: row[k] for k in ("err", "spread", "var")}}
                    journal.write(json.dumps(entry) + "\n")
                    journal.flush()
                    print(json.dumps(entry), file=sys.stderr, flush=True)


def oracle_table(rows: list[dict]) -> list[str]:
    head = "| outer steps, inner solve | NFE | " + " | ".join(f"{o} {t} err / spread / var" for o in ORACLES
                                                                for t in TASKS) + " |"
    lines = [head, "|---" * (2 + len(ORACLES) * len(TASKS)) + "|"]
    for scheme in SCHEMES:
        cells, nfe = [], None
        for o in ORACLES:
            for t in TASKS:
                got = [r for r in rows if (r["oracle"], r["task"], r["scheme"]) == (o, t, scheme)]
                if len(got) < PROBLEMS:
                    cells.append("—")
                    continue
                nfe = got[0]["nfe"]
                m = {k: float(np.mean([r[k] for r in got])) for k in ("err", "spread", "var")}
                cells.append(f"{m['err']:.2f} / {m['spread']:.2f} / {m['var']:+.2f}")
        lines.append(f"| {scheme} | {'—' if nfe is None else f'{nfe:.0f}'} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="only rebuild the tables from the journal")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    rows = journal_entries(JOURNAL)
    if not args.report:
        with JOURNAL.open("a") as journal:
            run({(r["oracle"], r["task"], r["problem"], r["scheme"]) for r in rows}, journal)
        rows = journal_entries(JOURNAL)
    text = "\n".join([
        "# Where the spread goes (`python benchmarks/spread.py`)", "",
        "## A Gaussian component N(0, v): final variance over v (1 = exact; exact denoiser and inner solve)", "",
        *closed_form(), "",
        f"## The image oracles: err / spread / var, means over {PROBLEMS} problems × 64 samples "
        "(exact: 1 / 1 / 0)", "",
        *oracle_table(rows), ""])
    (RESULTS / "spread.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
