"""Cost of inexact Newton vs DPS on a full-size SD-1.5-shaped UNet + VAE (random weights).

    python benchmarks/cost_sd.py                 # 256² on CPU; 512² fp16 on a GPU when present
    python benchmarks/cost_sd.py --size 512 --reps 3

Step times: Newton and DPS steps alternate in one process (same load at the same moment; median
of --reps pairs). Peak memory: each method alone in its own subprocess (CPU = peak resident set
size, GPU = torch.cuda.max_memory_allocated). One Newton inner step = one finite-difference UNet forward +
one re-evaluation forward; one DPS step = one UNet forward + one backward through the UNet.
Seconds per image for Newton at batch sizes 1, 2, 4 come from the measured per-forward time at that
batch size times S·(1+2K) forwards, plus one VAE decode (stated as such in the output).
Writes benchmarks/results/cost_sd.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def build(device: str, dtype):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from fcs import UNetDenoiser

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64)  # the SD-1.5 UNet layout
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    den = UNetDenoiser(unet, sched, vae=vae).to(device, dtype)
    return den, sum(p.numel() for p in unet.parameters())


def _peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def child(method: str, size: int, batch: int, reps: int, device: str) -> dict:
    """Time one method's step in this process and report its peak memory."""
    import torch

    from fcs.constraints import LatentInpaint
    from fcs.samplers.newton import jacobian_direction

    dtype = torch.float16 if device == "cuda" else torch.float32
    den, params = build(device, dtype)
    torch.set_grad_enabled(False)
    h = size // 8
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, h, h, generator=gen).to(device)
    cond = torch.randn(batch, 77, 768, generator=gen).to(device, dtype)
    known = torch.zeros(batch, 1, h, h, device=device)
    known[..., : h // 2, :] = 1
    constraint = LatentInpaint(torch.randn(batch, 4, h, h, generator=gen).to(device), known)
    t = 500
    base = _peak_mb(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def newton_step():
        eps, x0 = den.predict(x, t, cond)  # the x̂0 the inner step starts from (timed separately)
        e, _ = constraint.error(x0)
        _sync(device)
        start = time.perf_counter()
        d = jacobian_direction(den, x, x0, e, t, cond, 0.005, "fd")
        den.predict(x + 0.1 * d / d.abs().amax(), t, cond)
        _sync(device)
        return time.perf_counter() - start

    def dps_step():
        _sync(device)
        start = time.perf_counter()
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            _, x0 = den.predict(x_in, t, cond)
            (g,) = torch.autograd.grad(constraint.residual(x0).sum(), x_in)
        _sync(device)
        return time.perf_counter() - start

    def forward():
        _sync(device)
        start = time.perf_counter()
        den.predict(x, t, cond)
        _sync(device)
        return time.perf_counter() - start

    def decode():
        _sync(device)
        start = time.perf_counter()
        den.decode(x)
        _sync(device)
        return time.perf_counter() - start

    if method == "time":  # Newton and DPS steps interleaved in one process: same load, same moment
        newton_step(), dps_step()  # warm-up
        pairs = [(newton_step(), dps_step()) for _ in range(reps)]
        newton_s = sorted(p[0] for p in pairs)[reps // 2]
        dps_s = sorted(p[1] for p in pairs)[reps // 2]
        return {"method": method, "newton_s": newton_s, "dps_s": dps_s, "dtype": str(dtype),
                "unet_params_m": params / 1e6}
    step = {"newton": newton_step, "dps": dps_step, "forward": forward, "decode": decode}[method]
    step()  # warm-up
    times = sorted(step() for _ in range(reps))
    return {"method": method, "size": size, "batch": batch, "device": device, "dtype": str(dtype),
            "unet_params_m": params / 1e6, "seconds": times[len(times) // 2], "peak_mb": _peak_mb(device),
            "baseline_mb": base}


def run_child(method: str, args, batch: int, reps: int | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, "--size", str(args.size), "--batch", str(batch),
         "--reps", str(reps or args.reps), "--device", args.device],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="image side (default 256 on CPU, 512 on GPU)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--batches", default="1,2,4", help="batch sizes for Newton seconds/image")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--newton-steps", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.size = args.size or (512 if args.device == "cuda" else 256)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batch, args.reps, args.device)))
        return
    timing = run_child("time", args, 1)
    newton, dps = run_child("newton", args, 1, reps=1), run_child("dps", args, 1, reps=1)  # peak memory, each alone
    nfe = args.steps * (1 + 2 * args.newton_steps)
    per_batch = []
    for b in [int(v) for v in args.batches.split(",")]:
        fwd, dec = run_child("forward", args, b), run_child("decode", args, b)
        per_batch.append({"batch": b, "forward_s": fwd["seconds"], "decode_s": dec["seconds"],
                          "seconds_per_image": (nfe * fwd["seconds"] + dec["seconds"]) / b})
    report = {
        "config": {"size": args.size, "device": args.device, "dtype": newton["dtype"], "steps": args.steps,
                   "newton_steps": args.newton_steps, "unet_params_m": round(newton["unet_params_m"], 1)},
        "newton_inner_step_s": timing["newton_s"], "dps_step_s": timing["dps_s"],
        "time_ratio_dps_over_newton": timing["dps_s"] / timing["newton_s"],
        "newton_peak_mb": newton["peak_mb"], "dps_peak_mb": dps["peak_mb"],
        "newton_activation_mb": newton["peak_mb"] - newton["baseline_mb"],
        "dps_activation_mb": dps["peak_mb"] - dps["baseline_mb"],
        "memory_ratio_dps_over_newton": dps["peak_mb"] / newton["peak_mb"],
        "newton_seconds_per_image": per_batch,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cost_sd.json").write_text(json.dumps(report, indent=2))
    md = _markdown(report)
    (RESULTS / "cost_sd.md").write_text(md)
    print(md)


def _markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        f"### Cost on a full-size SD-1.5 UNet ({c['unet_params_m']} M params, random weights), "
        f"{c['size']}², {c['device']} {c['dtype']}, batch 1",
        "",
        "| | Newton inner step (2 UNet forwards) | DPS step (UNet forward + backward) | DPS / Newton |",
        "|---|---|---|---|",
        f"| seconds | {r['newton_inner_step_s']:.2f} | {r['dps_step_s']:.2f} | "
        f"{r['time_ratio_dps_over_newton']:.2f}× |",
        f"| peak memory (MB) | {r['newton_peak_mb']:.0f} | {r['dps_peak_mb']:.0f} | "
        f"{r['memory_ratio_dps_over_newton']:.2f}× |",
        f"| memory above loaded weights (MB) | {r['newton_activation_mb']:.0f} | {r['dps_activation_mb']:.0f} | |",
        "",
        f"Newton seconds per image (S={c['steps']}, K={c['newton_steps']}: "
        f"{c['steps'] * (1 + 2 * c['newton_steps'])} forwards × measured forward time at that batch size, "
        "+ 1 VAE decode):",
        "",
        "| batch | UNet forward (s) | VAE decode (s) | seconds / image |",
        "|---|---|---|---|",
    ]
    lines += [f"| {p['batch']} | {p['forward_s']:.2f} | {p['decode_s']:.2f} | {p['seconds_per_image']:.1f} |"
              for p in r["newton_seconds_per_image"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
