"""The exact J·e with blockwise attention against math attention, on the CPU, side by side.

    python benchmarks/attention_jvp.py            # ≈ 6 min on 2 cores
    python benchmarks/attention_jvp.py --reps 1   # quicker

1. Peak resident memory of one J·e through the built-in tiny SD model at 1024² (128² latents; its
   attention sits after one downsampling: 4,096 tokens), each attention kind alone in a fresh
   subprocess, after one J·e at 64² (the libraries' one-time allocations): the peak resident set size
   during the J·e above the resident set just before it.
2. Seconds of one J·e on the full-size SD-1.5 UNet (random weights, fp32) at 256², the two kinds
   alternating in one process (median of --reps pairs), with one forward beside them.

Writes benchmarks/results/attention_jvp.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))

KINDS = ("math", "blockwise")


def _rss_mb() -> float:
    """The resident set now (MB), from /proc."""
    import os

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _inputs(den, side: int, seed: int = 0):
    import torch

    shape = den.latent_shape(side, side)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, *shape, generator=gen), torch.randn(1, *shape, generator=gen)


def child_memory(kind: str, side: int) -> dict:
    """One J·e through the tiny SD model at ``side``² in this process: peak RSS above the RSS before it."""
    import torch

    from fcs import load_denoiser

    torch.set_num_threads(2)
    den = load_denoiser("tiny", device="cpu", dtype="float32")
    den.jvp_attention = kind
    cond = den.encode_prompt([""])
    den.jvp(*_inputs(den, 64), 500, cond)  # one small J·e first: the libraries' one-time allocations
    x, e = _inputs(den, side)
    before = _rss_mb()
    started = time.perf_counter()
    den.jvp(x, e, 500, cond)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "side": side, "rss_before_mb": before, "peak_mb": peak, "jvp_mb": peak - before,
            "seconds": seconds}


def memory_rows(side: int) -> list[dict]:
    rows = []
    for kind in KINDS:
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--side", str(side)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def timing(side: int, reps: int) -> dict:
    """Median seconds of one forward and one J·e per kind on the full-size SD-1.5 UNet at ``side``²."""
    import torch

    from fcs.families.memory import build_denoiser, random_cond

    torch.set_num_threads(2)
    den = build_denoiser("sd15", "cpu", torch.float32)
    x, e = _inputs(den, side)
    cond = random_cond("sd15", 1, "cpu", torch.float32)
    seconds: dict[str, list[float]] = {"forward": [], **{k: [] for k in KINDS}}
    with torch.no_grad():
        den.predict(x, 500, cond)  # warm-up
        for _ in range(reps):
            started = time.perf_counter()
            den.predict(x, 500, cond)
            seconds["forward"].append(time.perf_counter() - started)
            for kind in KINDS:
                den.jvp_attention = kind
                started = time.perf_counter()
                den.jvp(x, e, 500, cond)
                seconds[kind].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in seconds.items()} | {"reps": reps, "side": side}


def markdown(memory: list[dict], times: dict) -> str:
    by = {r["kind"]: r for r in memory}
    side = memory[0]["side"]
    lines = ["# The exact J·e: blockwise against math attention (`python benchmarks/attention_jvp.py`)", "",
             f"Peak resident memory of one J·e through the built-in tiny SD model at {side}² (each kind alone in "
             "a fresh process; MB above the resident set before the J·e):", "",
             "| attention in the J·e | J·e MB | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {by[k]['jvp_mb']:.0f} | {by[k]['seconds']:.1f} |" for k in KINDS]
    lines += ["", f"math / blockwise memory: {by['math']['jvp_mb'] / by['blockwise']['jvp_mb']:.1f}×", "",
              f"Full-size SD-1.5 UNet (random weights, fp32, CPU) at {times['side']}², median of {times['reps']} "
              "rounds in one process:", "", "| call | seconds |", "|---|---|",
              f"| one forward | {times['forward']:.2f} |"]
    lines += [f"| one J·e, {k} attention | {times[k]:.2f} |" for k in KINDS]
    lines += ["", f"blockwise / math time: {times['blockwise'] / times['math']:.2f}×"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024, help="image side of the tiny-model memory run")
    parser.add_argument("--timing-side", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_memory(args.child, args.side)))
        return
    memory = memory_rows(args.side)
    times = timing(args.timing_side, args.reps)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attention_jvp.json").write_text(json.dumps({"memory": memory, "timing": times}, indent=1) + "\n")
    text = markdown(memory, times)
    (RESULTS / "attention_jvp.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
