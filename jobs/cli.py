"""The ``fcs`` command line.

    fcs inpaint --image in.png --mask m.png --out out.png [--model tiny|ID|PATH]
    fcs run restore --input URI --output URI [...]      (see ``fcs run restore --help``)
    fcs run superres|style|layers|outpaint --input URI --output URI [...]
    fcs report OUTPUT_URI [--input URI] [--out report.html]
    fcs doctor [URI ...]                                 (what this machine / Ray cluster offers a job)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

COMMANDS = {"doctor": "jobs.doctor", "report": "jobs.report"}  # top-level commands with their own parsers


def _inpaint_parser(sub) -> None:
    from fcs.config import METHODS, SamplerConfig
    from fcs.loading import BUILTIN
    from fcs.presets import DEFAULT_PRESET, PRESETS
    from fcs.samplers import JACOBIANS

    defaults = SamplerConfig()
    p = sub.add_parser("inpaint", help="inpaint one image on this machine (no Ray)")
    p.add_argument("--image", required=True, help="input image (PNG/JPEG/WebP/...)")
    p.add_argument("--mask", required=True, help="mask image, white = regenerate, black = keep")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--model", default="photo",
                   help="hub id or local diffusers folder (SD 1.x/2.x, SDXL, SD3/3.5, FLUX.1), or a built-in name: "
                        f"'photo' (trained, 128²; the default), {', '.join(n for n in BUILTIN if n != 'photo')}")
    p.add_argument("--prompt", default="")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="named sampler settings under the flags below (default: the model's own recommendation, "
                        f"else {DEFAULT_PRESET}; cg and fast: fewer UNet calls)")
    p.add_argument("--steps", type=int, help=f"S outer DDIM steps (default {defaults.steps})")
    p.add_argument("--newton-steps", type=int, help=f"K inner Newton steps per step (default {defaults.newton_steps})")
    p.add_argument("--method", choices=METHODS, help=f"sampler (default {defaults.method})")
    p.add_argument("--jacobian", choices=JACOBIANS,
                   help="J·e: auto (default) = finite difference in fp32, exact JVP in fp16/bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance-scale", type=float, help=f"classifier-free guidance (default {defaults.guidance_scale})")
    p.add_argument("--no-composite", action="store_true", help="do not paste the original kept pixels back")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), float32, float16, bfloat16")


def _run_inpaint(args: argparse.Namespace) -> int:
    from fcs import FastConstrainedInpaintPipeline, SamplerConfig
    from fcs.loading import model_folder
    from fcs.presets import choose_preset, with_preset

    given = {name: getattr(args, name) for name in ("method", "steps", "newton_steps", "jacobian", "guidance_scale")
             if getattr(args, name) is not None}
    preset = choose_preset(args.preset, model_folder(args.model))
    config = with_preset(SamplerConfig(), preset, composite=not args.no_composite, **given)
    pipe = FastConstrainedInpaintPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    out = pipe(
        image=Path(args.image), mask_image=Path(args.mask), prompt=args.prompt, seed=args.seed,
        config=config, show_progress=True,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.images[0].save(args.out, format="PNG")
    logging.getLogger("fcs").info(
        "wrote %s (nfe=%d, residual %.4g -> %.4g)", args.out, out.nfe[0], out.residual_init[0], out.residual_final[0]
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[:1] and argv[0] in COMMANDS:
        import importlib

        return int(importlib.import_module(COMMANDS[argv[0]]).main(argv[1:]) or 0)
    if argv[:1] == ["run"]:
        from pipeline.tasks import TASKS

        if len(argv) < 2 or argv[1] not in TASKS:
            print(f"usage: fcs run {{{','.join(TASKS)}}} [options]", file=sys.stderr)
            return 2
        from jobs import batch

        return batch.main(argv[1], argv[2:])
    from pipeline.tasks import TASKS

    parser = argparse.ArgumentParser(prog="fcs",
                                     description="Fast constrained sampling (inexact Newton) over diffusers models")
    sub = parser.add_subparsers(dest="command", required=True)
    _inpaint_parser(sub)
    sub.add_parser("run", help=f"run a batch job on Ray: fcs run {{{','.join(TASKS)}}} --help")
    sub.add_parser("doctor", help="check GPUs, versions, Ray cluster, storage and model cache: fcs doctor --help")
    sub.add_parser("report", help="HTML report of a finished job: fcs report OUTPUT_URI --help")
    args = parser.parse_args(argv)
    try:
        return _run_inpaint(args)
    except (ValueError, OSError) as exc:
        print(f"fcs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
