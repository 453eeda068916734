"""The ``fcs`` command line.

    fcs inpaint --image in.png --mask m.png --out out.png [--model tiny|ID|PATH]
    fcs run restore --input URI --output URI [...]      (see ``fcs run restore --help``)
    fcs run superres|style|layers|outpaint --input URI --output URI [...]
    fcs tune restore|outpaint|superres --model M --input URI --output URI [...]   (see ``fcs tune restore --help``)
    fcs report OUTPUT_URI [--input URI] [--out report.html]
    fcs doctor [URI ...]                                 (what this machine / Ray cluster offers a job)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# top-level commands with their own parsers
COMMANDS = {"doctor": "jobs.doctor", "report": "jobs.report", "tune": "jobs.tune"}
INPAINT_MODEL = "photo"  # fcs inpaint's model unless --model: the built-in trained one, 128²


SAMPLER = "sampler_"  # argparse dest prefix of the sampler's flags


def _inpaint_parser(sub) -> None:
    from fcs.config import DEVICE, DTYPE, MODEL, SamplerConfig
    from fcs.presets import PRESET
    from fcs.settings import add_flags, settings_of
    from pipeline.config import JobConfig

    TUNING = next(s for s in settings_of(JobConfig) if s.name == "tuning")

    p = sub.add_parser("inpaint", help="inpaint one image on this machine (no Ray)")
    p.add_argument("--image", required=True, help="input image (PNG/JPEG/WebP/...)")
    p.add_argument("--mask", required=True, help="mask image, white = regenerate, black = keep")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--prompt", default="")
    p.add_argument("--seed", type=int, default=0)
    add_flags(p, (MODEL, DEVICE, DTYPE, PRESET, TUNING), defaults={"model": INPAINT_MODEL})
    add_flags(p.add_argument_group("sampler"), settings_of(SamplerConfig), dest_prefix=SAMPLER)


def _run_inpaint(args: argparse.Namespace) -> int:
    from fcs import FastConstrainedInpaintPipeline, SamplerConfig
    from fcs.settings import given, settings_of

    model, device, dtype = args.model or INPAINT_MODEL, args.device or "auto", args.dtype or "auto"
    explicit = given(args, settings_of(SamplerConfig), SAMPLER)
    pipe = FastConstrainedInpaintPipeline.from_pretrained(model, device=device, dtype=dtype, tuning=args.tuning)
    out = pipe(
        image=Path(args.image), mask_image=Path(args.mask), prompt=args.prompt, seed=args.seed,
        config=pipe.settings(args.preset, **explicit), show_progress=True,
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
    sub.add_parser("tune", help="measure sampler settings on your own data: fcs tune restore --help")
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
