"""GPU cost of the sampler on the full-size SD 1.5, SDXL, SD3.5-medium and FLUX.1-dev architectures.

    python benchmarks/gpu.py                  # CUDA: every family, one command, ≤ 7 minutes (--budget-s)
    python benchmarks/gpu.py --plan           # what it would run, with FLOPs and time estimates; no GPU needed
    python benchmarks/gpu.py --tiny           # the suite's check: each family's tiny built-in model on the CPU
    python benchmarks/gpu.py --families sdxl,flux-dev

Random weights built directly on the GPU in each family's dtype from the published configs
(:mod:`fcs.families.memory`), with random prompt embeddings of the right shapes, all through the
family's own :class:`fcs.denoiser.Denoiser` (the call path a job uses): torch + diffusers, no Ray,
no download. Per family: denoiser forwards/s by batch; one Newton inner step by finite difference
(2 forwards) vs exact JVP (1 forward-mode pass + 1 forward), the JVP with blockwise attention (what
runs, :mod:`fcs.attention_jvp`) and with math attention (the N×N path it replaced); a forward with fused
SDPA vs math attention; seconds per image for the ``fast`` and ``cg`` presets (latent
inpainting, top half known, ``jacobian="auto"``: the exact JVP in half precision, + one VAE decode);
peak memory of each stage; achieved TFLOP/s from FLOPs counted by ``torch.utils.flop_counter``.
SD 1.5 at 512², the others at 1024²; then ``torch.compile`` on SD 1.5 if time is left.

Time: every stage is estimated before it runs (counted FLOPs at an assumed :data:`PLAN_TFLOPS`, then
the forward and JVP times measured so far); a stage that would end past ``--budget-s`` is skipped and
reported as such, so the command ends in time. Results go to gpu.{json,md} in --out (default
benchmarks/results/), rewritten after every family. Without a GPU (and without --tiny) it writes the
plan with "not measured" rows instead, unless measured results are already there.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results"

FAMILIES = ("sd15", "sdxl", "sd35-medium", "flux-dev")
ALIASES = {"sd3": "sd35-medium", "sd3.5": "sd35-medium", "sd35": "sd35-medium", "flux": "flux-dev"}
PLAN_TFLOPS = 300.0  # assumed sustained fp16/bf16 TFLOP/s of one H100 for planning (≈ 30% of its dense peak)
JVP_EFFICIENCY = 0.5  # the exact JVP (forward-mode, math attention) is planned at half that rate
CALL_OVERHEAD_S = 0.01  # eager launch overhead per denoiser call (planning)
COMPILE_S = 90.0  # planned torch.compile time of the SD 1.5 UNet
BUDGET_S = 420.0  # the whole command, start-up included, stays under 8 minutes
PRESETS = ("fast", "cg")  # whole images; the paper's 220 calls would not fit the budget on FLUX
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Setup:
    """What is run for one family: image side, batches for forwards/s, the batch of the inner-step and
    preset timings."""

    side: int
    batches: tuple[int, ...]
    batch: int


SETUPS = {"sd15": Setup(512, (1, 2, 4, 8, 16), 8), "sdxl": Setup(1024, (1, 2, 4, 8), 2),
          "sd35-medium": Setup(1024, (1, 2, 4), 1), "flux-dev": Setup(1024, (1, 2, 4), 1)}
TINY = Setup(64, (1, 2), 1)


def family_names(spec: str) -> list[str]:
    names = [ALIASES.get(n.strip(), n.strip()) for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise SystemExit(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; choose from "
                         f"{', '.join(FAMILIES)} (aliases: {', '.join(ALIASES)})")
    return names


# -- building ----------------------------------------------------------------------------------
def build(name: str, tiny: bool, device: str):
    """(denoiser, cond maker): the full-size random-weight model on ``device``, or the family's tiny
    built-in model (fp32, CPU) whose prompts go through its own text encoders."""
    from fcs.families import memory

    arch = memory.architecture(name)
    if tiny:
        from fcs import load_denoiser
        from fcs.loading import BUILT

        path = BUILT[arch.tiny](Path(tempfile.mkdtemp()) / arch.tiny)
        den = load_denoiser(path, device=device, dtype=torch.float32)
        return den, lambda batch: den.encode_prompt([""] * batch)
    torch.manual_seed(0)
    den = memory.build_denoiser(name, device, arch.dtype)
    gen = torch.Generator().manual_seed(0)
    return den, lambda batch: memory.random_cond(name, batch, device, arch.dtype, gen)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, reps: int, warm: bool = True) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs, after one warm-up run unless ``warm`` is False."""
    if warm:
        fn()
        sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


T = 500  # the timestep of the single-call timings (s = 0.5 for the flow families)


def latents(den, side: int, batch: int, seed: int = 0) -> torch.Tensor:
    c, h, w = den.latent_shape(side, side)
    return torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed)).to(den.device)


def count_flops(den, side: int, cond, jvp: bool = False) -> float:
    """FLOPs of one denoiser forward (or exact JVP) at batch 1, counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from fcs.families.memory import forward_mode_jvp

    x = latents(den, side, 1) if den.device.type != "meta" else torch.empty(1, *den.latent_shape(side, side),
                                                                              device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if jvp:
            with forward_mode_jvp():
                den.jvp(x, torch.ones_like(x), T, cond)
        else:
            den.predict(x, T, cond)
    return float(counter.get_total_flops())


# -- the time plan -----------------------------------------------------------------------------
class Clock:
    """Estimates each stage before it runs, skips what would end past the budget, and records both."""

    def __init__(self, budget_s: float, started: float | None = None) -> None:
        self.budget_s, self.started = budget_s, started or time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(self, record: dict, stage: str, estimate_s: float, fn):
        """``fn()`` if it fits the remaining budget, else None; logs (stage, estimate, seconds) in ``record``."""
        entry = {"stage": stage, "estimate_s": round(estimate_s, 1)}
        record.setdefault("stages", []).append(entry)
        if self.elapsed() + estimate_s > self.budget_s:
            entry["skipped"] = f"time budget: {self.elapsed():.0f} s used of {self.budget_s:.0f}"
            print(f"  {stage}: skipped ({entry['skipped']})", flush=True)
            return None
        start = time.perf_counter()
        out = fn()
        entry["seconds"] = round(time.perf_counter() - start, 1)
        print(f"  {stage}: {entry['seconds']} s (estimated {entry['estimate_s']})", flush=True)
        return out


class Rates:
    """Seconds per call: planned from FLOPs until measured."""

    def __init__(self, gflop: float, jvp_gflop: float, tflops: float = PLAN_TFLOPS) -> None:
        self.gflop, self.jvp_gflop, self.tflops = gflop, jvp_gflop, tflops
        self.forward: dict[int, float] = {}  # measured seconds per forward at batch b
        self.jvp: dict[int, float] = {}  # measured seconds per exact JVP at batch b

    def fwd(self, b: int) -> float:
        return self.forward.get(b) or b * self.gflop / (self.tflops * 1e3) + CALL_OVERHEAD_S

    def jvp_s(self, b: int) -> float:
        return self.jvp.get(b) or b * self.jvp_gflop / (self.tflops * JVP_EFFICIENCY * 1e3) + 3 * CALL_OVERHEAD_S

    def preset(self, name: str, b: int, half: bool) -> float:
        steps, k = preset_steps(name)
        inner = (self.jvp_s(b) if half else self.fwd(b)) + self.fwd(b)
        return steps * self.fwd(b) + steps * k * inner + 2 * self.fwd(b)  # + the VAE decode, about 2 forwards


def preset_steps(name: str) -> tuple[int, int]:
    from fcs import SamplerConfig
    from fcs.presets import with_preset

    config = with_preset(SamplerConfig(), name)
    return config.steps, config.newton_steps


# -- the measurements ---------------------------------------------------------------------------
def forwards(den, make_cond, side: int, batches, device: str, reps: int, rates: Rates) -> dict[int, float]:
    out = {}
    for b in batches:
        x, cond = latents(den, side, b), make_cond(b)
        seconds = timed(lambda x=x, cond=cond: den.predict(x, T, cond), device, reps)
        rates.forward[b] = seconds
        out[b] = b / seconds
    return out


def inner_step(den, make_cond, side: int, batch: int, device: str, reps: int, rates: Rates) -> dict[str, float]:
    """Seconds of one Newton inner step (direction + re-evaluation) by FD and by JVP, a forward under
    each attention backend, and the peak memory of the FD and JVP steps."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fcs.samplers.newton import jacobian_direction

    x, cond = latents(den, side, batch), make_cond(batch)
    _, x0 = den.predict(x, T, cond)
    e = torch.randn_like(x0)

    def step(jacobian: str):
        d = jacobian_direction(den, x, x0, e, T, cond, h=0.005, jacobian=jacobian)
        return den.predict(x + 0.1 * d / d.abs().amax().clamp_min(1e-6), T, cond)

    def math_forward():
        with sdpa_kernel([SDPBackend.MATH]):
            return den.predict(x, T, cond)

    def math_jvp_step():  # the exact JVP with math attention: the N×N path the blockwise one replaced
        den.jvp_attention = "math"
        try:
            return step("jvp")
        finally:
            den.jvp_attention = "blockwise"

    out = {"batch": batch}
    for key, fn in (("fd_s", lambda: step("fd")), ("jvp_s", lambda: step("jvp")), ("jvp_math_s", math_jvp_step),
                    ("forward_sdpa_s", lambda: den.predict(x, T, cond)), ("forward_math_s", math_forward)):
        reset_peak(device)
        out[key] = timed(fn, device, reps)
        out[key.replace("_s", "_peak_gb")] = peak_gb(device)
    rates.jvp[batch] = max(out["jvp_s"] - out["forward_sdpa_s"], 1e-6)
    return out


def newton_per_image(den, make_cond, side: int, batch: int, preset: str, device: str, warm: bool) -> dict:
    """Seconds per image (sampling + decode) of latent inpainting (top half known) under ``preset``."""
    from fcs import SamplerConfig, newton, noise
    from fcs.constraints import LatentInpaint
    from fcs.presets import with_preset

    config = with_preset(SamplerConfig(), preset)
    gens = noise.generators(range(batch))
    shape = den.latent_shape(side, side)
    y = noise.randn(shape, gens, den.device)
    known = torch.zeros(batch, 1, *shape[1:], device=den.device)
    known[..., : shape[1] // 2, :] = 1
    constraint = LatentInpaint(y, known)
    cond = make_cond(batch)
    jacobian = "fd" if den.dtype == torch.float32 else "jvp"  # what jacobian="auto" picks

    def run():
        result = newton(den, constraint, noise.randn(shape, gens, den.device), cond, steps=config.steps, gens=gens,
                        **config.sampler_options())
        with torch.no_grad():
            den.decode(result.x0)
        return result

    reset_peak(device)
    seconds = timed(run, device, 1, warm=warm)
    return {"nfe": config.nfe_per_item, "jacobian": jacobian, "batch": batch, "seconds_per_image": seconds / batch,
            "images_per_s": batch / seconds, "peak_gb": peak_gb(device)}


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def measure_family(name: str, setup: Setup, tiny: bool, device: str, reps: int, clock: Clock,
                   planned: dict) -> dict:
    """Every stage for one family, each within the time budget; the family's model is freed after."""
    from fcs.families import memory

    arch = memory.architecture(name)
    record = {"family": name, "model": arch.tiny if tiny else f"{arch.hub_id} (random weights)",
              "image_side": setup.side, "measured": True}
    rates = Rates(planned["gflop_per_forward"], planned["gflop_per_jvp"])
    built = clock.run(record, "build", planned["build_s"], lambda: build(name, tiny, device))
    if built is None:
        record["measured"] = False
        return record
    den, make_cond = built
    net = getattr(den, "transformer", None) or den.unet
    record |= {"dtype": memory.DTYPE_NAMES[den.dtype], "params": sum(p.numel() for p in net.parameters())}
    half = den.dtype != torch.float32
    b = setup.batch
    with torch.no_grad():
        flops = clock.run(record, "count FLOPs", 2 * rates.fwd(1) + 1,
                          lambda: count_flops(den, setup.side, make_cond(1)))
        if flops:
            record["gflop_per_forward"] = flops / 1e9
            rates.gflop = flops / 1e9
        estimate = sum((reps + 1) * rates.fwd(n) for n in setup.batches)
        rate = clock.run(record, "forwards by batch", estimate,
                         lambda: forwards(den, make_cond, setup.side, setup.batches, device, reps, rates))
        if rate:
            record["forwards_per_s"] = rate
            if flops:
                record["tflops_achieved"] = {n: r * flops / 1e12 for n, r in rate.items()}
        estimate = (reps + 1) * (4 * rates.fwd(b) + 2 * rates.jvp_s(b) + 1.5 * rates.fwd(b))
        step = clock.run(record, f"inner step FD vs JVP, batch {b}", estimate,
                         lambda: inner_step(den, make_cond, setup.side, b, device, reps, rates))
        if step:
            record["inner_step"] = step
    record["presets"] = {}
    # no warm-up run on the GPU or for the tiny models: the shapes are those of the inner step, already run
    warm = device != "cuda" and not tiny
    for preset in sorted(PRESETS, key=lambda p: rates.preset(p, b, half)):  # the cheaper first
        result = clock.run(record, f"preset {preset}, batch {b}", rates.preset(preset, b, half) * (1 + warm),
                           lambda preset=preset: newton_per_image(den, make_cond, setup.side, b, preset, device, warm))
        if result:
            record["presets"][preset] = result
    record["presets"] = {p: record["presets"][p] for p in PRESETS if p in record["presets"]}
    record["peak_gb"] = max((v for v in _peaks(record)), default=None)
    return record  # the model goes with this frame; the caller frees the cache


def _peaks(record: dict):
    for key, value in record.get("inner_step", {}).items():
        if key.endswith("_peak_gb") and value is not None:
            yield value
    for p in record.get("presets", {}).values():
        if p.get("peak_gb") is not None:
            yield p["peak_gb"]


def compile_sd15(device: str, reps: int, clock: Clock, planned: dict, record: dict) -> None:
    """torch.compile of the SD 1.5 UNet: compile time, then forwards/s at the preset batch."""
    setup = SETUPS["sd15"]
    rates = Rates(planned["gflop_per_forward"], planned["gflop_per_jvp"])
    if "forwards_per_s" in record:
        rates.forward |= {b: b / r for b, r in record["forwards_per_s"].items()}

    def run():
        den, make_cond = build("sd15", False, device)
        start = time.perf_counter()
        den.accelerate(compile=True)
        x, cond = latents(den, setup.side, setup.batch), make_cond(setup.batch)
        with torch.no_grad():
            den.predict(x, T, cond)
            sync(device)
            compile_s = time.perf_counter() - start
            rate = setup.batch / timed(lambda: den.predict(x, T, cond), device, reps)
        return {"compile_s": compile_s, "batch": setup.batch, "forwards_per_s": rate}

    result = clock.run(record, "torch.compile", COMPILE_S + (reps + 2) * rates.fwd(setup.batch) + 5, run)
    free(device)
    if result:
        record["compiled"] = result


# -- the plan (no GPU needed) -------------------------------------------------------------------
def plan_family(name: str, setup: Setup, reps: int, tiny: bool = False) -> dict:
    """Parameters, counted FLOPs (forward and exact JVP at batch 1, on the meta device, through the
    family's Denoiser) and the planned seconds of every stage."""
    from fcs.families import memory

    arch = memory.architecture(name)
    params = memory.parameter_counts(name)["denoiser"]
    if tiny:
        return {"params": params, "gflop_per_forward": 0.1, "gflop_per_jvp": 0.3, "build_s": 30.0}
    den = memory.build_denoiser(name, "meta")
    cond = memory.random_cond(name, 1, "meta", arch.dtype)
    gflop = count_flops(den, setup.side, cond) / 1e9
    jvp_gflop = count_flops(den, setup.side, cond, jvp=True) / 1e9
    rates = Rates(gflop, jvp_gflop)
    b = setup.batch
    stages = {"build": 3 + params / 2e9, "count FLOPs": 2 * rates.fwd(1) + 1,
              "forwards by batch": sum((reps + 1) * rates.fwd(n) for n in setup.batches),
              f"inner step FD vs JVP, batch {b}":
                  (reps + 1) * (4 * rates.fwd(b) + 2 * rates.jvp_s(b) + 1.5 * rates.fwd(b))}
    stages |= {f"preset {p}, batch {b}": rates.preset(p, b, True) for p in PRESETS}
    return {"params": params, "dtype": memory.DTYPE_NAMES[arch.dtype], "gflop_per_forward": gflop,
            "gflop_per_jvp": jvp_gflop, "build_s": stages["build"],
            "planned_stages": {k: round(v, 1) for k, v in stages.items()},
            "planned_s_per_image": {p: round(rates.preset(p, b, True) / b, 1) for p in PRESETS}}


def plan(names: list[str], reps: int, compile_: bool) -> dict:
    families = {n: plan_family(n, SETUPS[n], reps) for n in names}
    total = sum(sum(f["planned_stages"].values()) for f in families.values())
    extra = []
    if compile_ and "sd15" in names:
        seconds = COMPILE_S + (reps + 2) * Rates(families["sd15"]["gflop_per_forward"], 0).fwd(SETUPS["sd15"].batch) + 5
        extra.append({"stage": "torch.compile", "estimate_s": round(seconds, 1),
                      "skipped": "runs last, when the budget allows"})
    return {"families": families, "planned_total_s": round(total, 1), "extra_stages": extra}


# -- output -------------------------------------------------------------------------------------
def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _gflop(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _or_nm(value, fmt: str) -> str:
    return NOT_MEASURED if value is None else format(value, fmt)


def _peak(r: dict, value: float | None) -> str:
    if r["measured"] and not r.get("cuda") and value is None:
        return "-"  # CPU runs have no allocator peak
    return _or_nm(value, ".1f")


def markdown(r: dict) -> str:
    head = (f"### GPU cost per family: {r['device']}, torch {r['torch']}" if r["measured"] else
            f"### GPU cost per family: not measured (no GPU in this environment), torch {r['torch']}")
    lines = [head, "",
             "Random weights in each family's dtype, random prompt embeddings of its shapes, through its "
             "Denoiser; latent inpainting (top half known), `jacobian=\"auto\"` (exact JVP in fp16/bf16); "
             + ("`python benchmarks/gpu.py --tiny` (each family's tiny built-in model on the CPU)." if r.get("tiny")
                else "`python benchmarks/gpu.py`."), "",
             "| family | image | dtype | denoiser params | GFLOP per forward (counted) | forwards/s (batch) | "
             "inner step FD / JVP, ms (batch) | " + " | ".join(f"`{p}` s/image" for p in PRESETS) + " | peak GB |",
             "|---" * (7 + len(PRESETS)) + "|"]
    for name, f in r["families"].items():
        rate = f.get("forwards_per_s") or {}
        b_top = max(rate) if rate else None
        step = f.get("inner_step")
        presets = f.get("presets") or {}
        lines.append(
            f"| {name} | {f['image_side']}² | {f.get('dtype', '-')} | {_params(f['params'])} | "
            f"{_gflop(f['gflop_per_forward'])} | "
            + (f"{rate[b_top]:.2f} ({b_top})" if rate else NOT_MEASURED) + " | "
            + (f"{step['fd_s'] * 1e3:.0f} / {step['jvp_s'] * 1e3:.0f} ({step['batch']})" if step else NOT_MEASURED)
            + " | " + " | ".join(_or_nm(presets.get(p, {}).get("seconds_per_image"), ".3g") for p in PRESETS)
            + f" | {_peak(r, f.get('peak_gb'))} |")
        if f.get("error"):
            lines.append(f"| {name} | failed: {f['error']} | | | | | | | | |")
    for name, f in r["families"].items():
        if not f.get("forwards_per_s") and not f.get("presets"):
            continue
        lines += ["", f"#### {name}: {f['model']}, {f['image_side']}², {f.get('dtype')}", ""]
        if f.get("forwards_per_s"):
            lines += ["| batch | forwards/s | achieved TFLOP/s |", "|---|---|---|"]
            lines += [f"| {b} | {v:.2f} | {f.get('tflops_achieved', {}).get(b, float('nan')):.3g} |"
                      for b, v in f["forwards_per_s"].items()]
        s = f.get("inner_step")
        if s:
            mem = (f" Peak memory: FD step {s['fd_peak_gb']:.1f} GB, JVP step {s['jvp_peak_gb']:.1f} GB "
                   f"(math attention: {s['jvp_math_peak_gb']:.1f} GB)." if s.get("fd_peak_gb") is not None else "")
            lines += ["", f"Newton inner step at batch {s['batch']}: finite difference {s['fd_s'] * 1e3:.1f} ms, "
                      f"exact JVP {s['jvp_s'] * 1e3:.1f} ms (blockwise attention; math attention "
                      f"{s['jvp_math_s'] * 1e3:.1f} ms); one forward with fused SDPA "
                      f"{s['forward_sdpa_s'] * 1e3:.1f} ms vs math attention {s['forward_math_s'] * 1e3:.1f} ms.{mem}"]
        if f.get("presets"):
            lines += ["", "| preset | NFE per image | Jacobian | batch | s per image | images/s per GPU | peak GB |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {p} | {v['nfe']} | {v['jacobian']} | {v['batch']} | {v['seconds_per_image']:.3f} | "
                      f"{v['images_per_s']:.3f} | {_peak(r, v['peak_gb'])} |" for p, v in f["presets"].items()]
    if r.get("compiled"):
        c = r["compiled"]
        lines += ["", f"torch.compile (sd15): {c['compile_s']:.0f} s to compile, then {c['forwards_per_s']:.1f} "
                  f"forwards/s at batch {c['batch']}."]
    lines += ["", f"Stages (estimated from counted FLOPs at {PLAN_TFLOPS:.0f} TFLOP/s, exact JVP at "
              f"{JVP_EFFICIENCY:g}× that, until measured; budget {r['budget_s']:.0f} s"
              + (f"; planned total {r['planned_total_s']:.0f} s before torch.compile" if r.get("planned_total_s")
                 else "") + "):", "",
              "| family | stage | estimated s | " + ("seconds |" if r["measured"] else "status |"), "|---|---|---|---|"]
    rows = [(name, st) for name, f in r["families"].items()
            for st in f.get("stages") or [{"stage": k, "estimate_s": v} for k, v in f.get("planned_stages", {}).items()]
            ]
    rows += [("sd15", st) for st in r.get("extra_stages", [])]
    lines += [f"| {name} | {st['stage']} | {st['estimate_s']} | {st.get('seconds', st.get('skipped', NOT_MEASURED))} |"
              for name, st in rows]
    planned = {n: f["planned_s_per_image"] for n, f in r["families"].items() if f.get("planned_s_per_image")}
    if planned and not r["measured"]:
        lines += ["", "Planned seconds per image (estimates from the counted FLOPs, not measurements): "
                  + "; ".join(f"{n} " + ", ".join(f"`{p}` {v[p]:g}" for p in PRESETS)
                              for n, v in planned.items()) + "."]
    if r.get("wall_s"):
        lines += ["", f"Wall time: {r['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2))
    md = markdown(result)
    (out / "gpu.md").write_text(md)
    return md


def _measured_there(out: Path) -> bool:
    try:
        return bool(json.loads((out / "gpu.json").read_text()).get("measured"))
    except (OSError, ValueError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, from {', '.join(FAMILIES)}")
    parser.add_argument("--tiny", action="store_true", help="each family's tiny built-in model at 64² on the CPU")
    parser.add_argument("--plan", action="store_true", help="print the plan (FLOPs, estimated seconds) and exit")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions of each single-call timing")
    parser.add_argument("--budget-s", type=float, default=None,
                        help=f"skip stages that would end later (default {BUDGET_S:.0f} on CUDA, none otherwise)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile of SD 1.5 (CUDA)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    names = family_names(args.families)
    started = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    compile_ = cuda and not args.no_compile
    if args.budget_s is None:
        args.budget_s = BUDGET_S if cuda or args.plan or not args.tiny else float("inf")
    base = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
            "cuda": cuda, "torch": torch.__version__, "budget_s": args.budget_s, "plan_tflops": PLAN_TFLOPS,
            "tiny": args.tiny}
    torch.set_grad_enabled(False)
    if args.tiny:  # toy models gain nothing from threads, and lose a lot on a shared CPU
        torch.set_num_threads(1)
    if args.plan or not (cuda or args.tiny):
        planned = plan(names, args.reps, compile_=True)
        families = {n: {"family": n, "image_side": SETUPS[n].side, "measured": False, **p}
                    for n, p in planned["families"].items()}
        result = base | {"device": "no GPU", "measured": False, "families": families,
                         "planned_total_s": planned["planned_total_s"], "extra_stages": planned["extra_stages"]}
        md = markdown(result)
        print(md)
        if not args.plan and not _measured_there(args.out):
            write(result, args.out)
            print(f"no GPU here: wrote the plan with '{NOT_MEASURED}' rows to {args.out}/gpu.md")
        elif not args.plan:
            print(f"no GPU here; kept the measured results in {args.out}/gpu.md")
        return
    clock = Clock(args.budget_s, started)
    result = base | {"measured": True, "families": {}}
    for name in names:
        setup = TINY if args.tiny else SETUPS[name]
        print(f"{name}:", flush=True)
        planned = plan_family(name, setup, args.reps, tiny=args.tiny)
        try:
            result["families"][name] = measure_family(name, setup, args.tiny, device, args.reps, clock, planned)
            free(device)
        except Exception as exc:  # one family's failure (e.g. out of memory) must not cost the others' numbers
            if args.tiny:
                raise
            traceback.print_exc()
            result["families"][name] = {"family": name, "image_side": setup.side, "measured": False,
                                        "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", **planned}
            free(device)
        result["wall_s"] = clock.elapsed()
        write(result, args.out)
    if compile_ and "sd15" in names:
        extra: dict = {}
        compile_sd15(device, args.reps, clock, plan_family("sd15", SETUPS["sd15"], args.reps), extra)
        result["compiled"] = extra.get("compiled")
        result["extra_stages"] = extra.get("stages", [])
    result["wall_s"] = clock.elapsed()
    print(write(result, args.out))


if __name__ == "__main__":
    main()
