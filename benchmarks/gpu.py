"""GPU cost of the sampler on an SD-1.5-shaped UNet + VAE (random weights): torch + diffusers only, no Ray.

    python benchmarks/gpu.py                # CUDA: 512² fp16, about 5 minutes on one H100/H200
    python benchmarks/gpu.py --tiny         # the suite's check: a tiny model at 64² on the CPU

Measures, in one process: UNet forwards/s at batch 1, 2, 4, 8, 16; one Newton inner step by finite
difference (2 forwards) vs exact JVP (1 forward-mode pass + 1 forward); fused SDPA vs math attention;
``torch.compile`` on/off (CUDA, or --compile); Newton seconds per image and images/s per GPU for the
``paper`` and ``fast`` presets (sampling + VAE decode, batch --batch); peak memory; achieved TFLOP/s
from FLOPs counted by ``torch.utils.flop_counter`` for one forward. Writes gpu.{json,md} to --out
(default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"


def build(tiny: bool, device: str, dtype: torch.dtype):
    """(denoiser, latent side, text embedding width): SD 1.5's UNet/VAE layout, or the tiny test model."""
    if tiny:
        import tempfile

        from fcs import load_denoiser
        from fcs import tiny as tiny_models

        path = tiny_models.build_tiny_sd(Path(tempfile.mkdtemp()) / "tiny")
        den = load_denoiser(path, device=device, dtype=dtype)
        return den, 64 // den.scale_factor
    from cost_sd import build as build_sd15

    den, _ = build_sd15(device, dtype)
    return den, 64


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def inputs(den, side: int, batch: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, den.channels, side, side, generator=gen).to(den.device)
    return x, den.encode_prompt([""] * batch)


def flops_per_forward(den, side: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x, cond = inputs(den, side, 1)
    with FlopCounterMode(display=False) as counter:
        den.predict(x, 500, cond)
    return float(counter.get_total_flops())


def forwards(den, side: int, batches: list[int], device: str, reps: int) -> dict[int, float]:
    out = {}
    for b in batches:
        x, cond = inputs(den, side, b)
        out[b] = b / timed(lambda x=x, cond=cond: den.predict(x, 500, cond), device, reps)
    return out


def inner_step(den, side: int, batch: int, device: str, reps: int) -> dict[str, float]:
    """Seconds of one Newton inner step (direction + re-evaluation) by FD and by JVP, and a forward
    under each attention backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fcs.samplers.newton import jacobian_direction

    x, cond = inputs(den, side, batch)
    _, x0 = den.predict(x, 500, cond)
    e = torch.randn_like(x0)

    def step(jacobian: str):
        d = jacobian_direction(den, x, x0, e, 500, cond, h=0.005, jacobian=jacobian)
        return den.predict(x + 0.1 * d, 500, cond)

    def math_forward():
        with sdpa_kernel([SDPBackend.MATH]):
            return den.predict(x, 500, cond)

    return {"fd_s": timed(lambda: step("fd"), device, reps), "jvp_s": timed(lambda: step("jvp"), device, reps),
            "forward_sdpa_s": timed(lambda: den.predict(x, 500, cond), device, reps),
            "forward_math_s": timed(math_forward, device, reps)}


def newton_per_image(den, side: int, batch: int, preset: str, device: str) -> dict[str, float]:
    """Seconds per image (sampling + decode) for a latent inpainting batch under ``preset``."""
    from fcs import SamplerConfig, newton, noise
    from fcs.constraints import LatentInpaint
    from fcs.presets import with_preset

    config = with_preset(SamplerConfig(), preset)
    gens = noise.generators(range(batch))
    y = noise.randn((den.channels, side, side), gens, den.device)
    known = torch.zeros(batch, 1, side, side, device=den.device)
    known[..., : side // 2, :] = 1
    constraint = LatentInpaint(y, known)
    cond = den.encode_prompt([""] * batch)

    def run():
        result = newton(den, constraint, noise.randn((den.channels, side, side), gens, den.device), cond,
                        steps=config.steps, gens=gens, **config.sampler_options())
        with torch.no_grad():
            den.decode(result.x0)
        return result

    seconds = timed(run, device, 1)
    return {"nfe": config.nfe_per_item, "seconds_per_image": seconds / batch, "images_per_s": batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model at 64² (CPU check)")
    parser.add_argument("--batch", type=int, default=8, help="batch for the inner-step and Newton timings")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (default on CUDA)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    torch.set_grad_enabled(False)
    den, side = build(args.tiny, device, dtype)
    batches = [1, 2] if args.tiny else [1, 2, 4, 8, 16]
    batch = 2 if args.tiny else args.batch
    started = time.perf_counter()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    flops = flops_per_forward(den, side)
    rates = forwards(den, side, batches, device, args.reps)
    step = inner_step(den, side, batch, device, args.reps)
    presets = {name: newton_per_image(den, side, batch, name, device) for name in ("paper", "fast")}
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    compiled = None
    if args.compile or device == "cuda":
        start = time.perf_counter()
        den.accelerate(compile=True)
        x, cond = inputs(den, side, batch)
        den.predict(x, 500, cond)
        sync(device)
        compile_s = time.perf_counter() - start
        compiled = {"compile_s": compile_s, "forwards_per_s": forwards(den, side, [batch], device, args.reps)[batch]}
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype).replace("torch.", ""), "image_side": side * den.scale_factor, "torch": torch.__version__,
        "gflop_per_forward": flops / 1e9, "forwards_per_s": rates,
        "tflops_achieved": {b: r * flops / 1e12 for b, r in rates.items()}, "inner_step": step,
        "presets": presets, "peak_mem_mb": peak, "compiled": compiled, "wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    md = markdown(result, batch)
    (args.out / "gpu.md").write_text(md)
    print(md)


def markdown(r: dict, batch: int) -> str:
    lines = [f"### GPU cost: {r['device']}, {r['dtype']}, {r['image_side']}² SD-1.5-shaped UNet + VAE "
             f"(random weights unless --tiny), torch {r['torch']}", "",
             f"One UNet forward at batch 1: {r['gflop_per_forward']:.4g} GFLOP (counted).", "",
             "| batch | UNet forwards/s | achieved TFLOP/s |", "|---|---|---|"]
    lines += [f"| {b} | {v:.1f} | {r['tflops_achieved'][b]:.3g} |" for b, v in r["forwards_per_s"].items()]
    s = r["inner_step"]
    lines += ["", f"Newton inner step at batch {batch}: finite difference {s['fd_s'] * 1e3:.1f} ms, exact JVP "
              f"{s['jvp_s'] * 1e3:.1f} ms; one forward with fused SDPA {s['forward_sdpa_s'] * 1e3:.1f} ms vs math "
              f"attention {s['forward_math_s'] * 1e3:.1f} ms.", "",
              "| preset | NFE per image | s per image | images/s per GPU |", "|---|---|---|---|"]
    lines += [f"| {name} | {p['nfe']} | {p['seconds_per_image']:.3f} | {p['images_per_s']:.2f} |"
              for name, p in r["presets"].items()]
    if r["compiled"]:
        c = r["compiled"]
        lines += ["", f"torch.compile: {c['compile_s']:.0f} s to compile, then {c['forwards_per_s']:.1f} forwards/s "
                  f"at batch {batch} (eager: {r['forwards_per_s'].get(batch, float('nan')):.1f})."]
    if r["peak_mem_mb"] is not None:
        lines += ["", f"Peak GPU memory: {r['peak_mem_mb']:.0f} MiB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
