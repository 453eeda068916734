"""Which Jacobian-vector product for half-precision models: finite difference at several h vs exact JVP.

    python benchmarks/half_precision.py                  # bf16 and fp16 (where CPU kernels allow), both models
    python benchmarks/half_precision.py --dtypes bfloat16 --n 8

In a half-precision UNet a finite-difference step of h (in units of max|e|) must survive rounding of
x_t (bf16 keeps 8 bits of mantissa, fp16 11), so ``jacobian="auto"`` is decided here by measured
quality, not by direction error: hole PSNR and seconds per item of Newton (the ``fast`` preset) with
FD at h ∈ {0.005, 0.02, 0.05} and with the exact JVP, next to the fp32 FD reference, on box
inpainting and ×2 super-resolution of both trained models. Writes
benchmarks/results/half_precision.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from frontier import load, sample, scores  # noqa: E402

RESULTS = HERE / "results"
H_VALUES = (0.005, 0.02, 0.05)


def settings(task: str) -> dict[str, dict]:
    from fcs import SamplerConfig
    from fcs.presets import with_preset
    from fcs.tasks.superres import SR_DEFAULTS

    base = with_preset(SR_DEFAULTS if task == "sr2" else SamplerConfig(), "fast")
    fields = {"steps": base.steps, "newton_steps": base.newton_steps, "lr": base.lr}
    out = {f"fd h={h:g}": {**fields, "jacobian": "fd", "h": h} for h in H_VALUES}
    out["jvp"] = {**fields, "jacobian": "jvp"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,photo")
    parser.add_argument("--dtypes", default="bfloat16,float16")
    parser.add_argument("--tasks", default="box,sr2")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for model in args.models.split(","):
        for dtype in ["float32", *args.dtypes.split(",")]:
            den, truth = load(model, args.n, dtype)
            for task in args.tasks.split(","):
                for name, fields in settings(task).items():
                    if dtype == "float32" and name != "fd h=0.005":
                        continue  # the fp32 reference: the paper's FD
                    try:
                        out, nfe, seconds = sample(den, task, truth, "newton", fields)
                        row = {**scores(task, out.float(), truth), "nfe": nfe, "seconds_per_item": seconds}
                    except (RuntimeError, NotImplementedError) as exc:  # a kernel this CPU lacks for the dtype
                        row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
                    rows.append({"model": model, "dtype": dtype, "task": task, "setting": name, **row})
                    print(model, dtype, task, name, row, file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "half_precision.json").write_text(json.dumps({"n": args.n, "rows": rows}, indent=2))
    md = markdown(rows, args.n)
    (args.out / "half_precision.md").write_text(md)
    print(md)


def markdown(rows: list[dict], n: int) -> str:
    lines = [f"### Half precision: FD step h vs exact JVP ({n} held-out items; Newton, `fast` preset)", "",
             "| model | dtype | task | J·e | hole PSNR (dB) | s/item |", "|---|---|---|---|---|---|"]
    for r in rows:
        cell = (f"{r['psnr_hole']:.2f} ± {r['psnr_ci']:.2f} | {r['seconds_per_item']:.2f}" if "error" not in r
                else f"n/a ({r['error']}) | n/a")
        lines.append(f"| {r['model']} | {r['dtype']} | {r['task']} | {r['setting']} | {cell} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
