"""``fcs run <task>``: its flags, its config merging, running it, its exit code, for every task of
:data:`pipeline.tasks.TASKS` (the task's options become flags, its ``about`` and ``examples`` the help).

Exit codes: 0 done (error rows included; they are reported), 1 the job failed or ids are missing or
duplicated in the output, 2 bad configuration or input (nothing was run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import yaml

from fcs.config import SamplerConfig
from fcs.loading import BUILTIN
from fcs.presets import DEFAULT_PRESET, PRESETS
from pipeline.errors import RETRY_ERRORS
from pipeline.output import ROWS_PER_FILE
from pipeline.sources import INPUT_FORMATS
from pipeline.sources.webdataset import DEFAULT_IMAGE_SUFFIXES, DEFAULT_MASK_SUFFIX
from pipeline.storage import READ_ATTEMPTS
from pipeline.tasks import TASKS, Task

CONFIGS = Path(__file__).parent / "configs"
log = logging.getLogger("fcs.jobs")
# job fields with a flag of the same name (--batch-size sets batch_size)
JOB_FLAGS = ("input", "output", "model", "actors", "batch_size", "s3_endpoint", "prompt", "gpus_per_actor", "device",
             "dtype", "limit", "preset", "rows_per_file", "retry_errors", "read_attempts", "input_format",
             "keep_columns", "image_suffixes", "mask_suffix", "prompt_suffix")
EXIT = "exit codes: 0 done (error rows included), 1 the job failed or ids are missing or duplicated,\n" \
       "2 bad configuration or input (nothing was run)"


def parser(task: Task) -> argparse.ArgumentParser:
    defaults = SamplerConfig()
    p = argparse.ArgumentParser(prog=f"fcs run {task.name}", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=task.about, epilog=f"examples:\n{task.examples}\n\n{EXIT}")
    p.add_argument("--input", help="Parquet shards, a folder with images/ (+ masks/), WebDataset .tar shards "
                                   "(e.g. s3://b/shards/{00000..00099}.tar) or a .csv/.parquet manifest of "
                                   "image_uri (+ mask_uri) (path or s3://, gs://, file:// URI)")
    p.add_argument("--input-format", choices=INPUT_FORMATS, help="default auto: detected from the input")
    p.add_argument("--keep-columns", nargs="*", metavar="COLUMN",
                   help="input columns copied to the output (default: all the task does not consume; "
                        "the flag alone: none)")
    p.add_argument("--image-suffixes", nargs="+", metavar="SUFFIX",
                   help=f"WebDataset: image members, first present wins (default {' '.join(DEFAULT_IMAGE_SUFFIXES)})")
    p.add_argument("--mask-suffix", help=f"WebDataset: mask member (default {DEFAULT_MASK_SUFFIX})")
    p.add_argument("--prompt-suffix", help="WebDataset: member used as the prompt, e.g. txt (default none)")
    p.add_argument("--output", help="output folder or prefix (part-*.parquet, _summary.json); reruns resume")
    p.add_argument("--model", help=f"hub id, local diffusers folder, or a built-in name ({', '.join(BUILTIN)})")
    p.add_argument("--actors", type=int, help="sampler actors, one resident model each (default 1)")
    p.add_argument("--batch-size", type=int, help="items per sampler call (default 4)")
    p.add_argument("--config", type=Path,
                   help=f"YAML job file (see jobs/configs/{task.name}.yaml); flags override it")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="named sampler settings laid under the flags below (default: the model's own "
                        f"recommendation, else {DEFAULT_PRESET}; "
                        "fast: fewer UNet calls, see README 'Quality vs cost')")
    p.add_argument("--steps", type=int, help=f"S outer DDIM steps (default {task.sampler.steps})")
    p.add_argument("--newton-steps", type=int,
                   help=f"K inner Newton steps per outer step (default {task.sampler.newton_steps}"
                        + ("" if task.sampler.newton_steps == defaults.newton_steps else f" for {task.name}") + ")")
    p.add_argument("--prompt", help="prompt for rows without one (default empty)")
    p.add_argument("--gpus-per-actor", type=float, help="default auto: 1 when the cluster has GPUs, else CPU")
    p.add_argument("--device", help="torch device for the sampler (default auto)")
    p.add_argument("--dtype", help="auto (fp16 on CUDA), float32, float16, bfloat16")
    p.add_argument("--limit", type=int, help="process at most this many pending items")
    p.add_argument("--rows-per-file", type=int, help=f"rows per committed output file (default {ROWS_PER_FILE})")
    p.add_argument("--retry-errors", nargs="?", const="all", choices=RETRY_ERRORS,
                   help="process committed error rows again: all (the default when given without a value; "
                        "after fixing bad inputs) or transient (read: and sample: errors only)")
    p.add_argument("--read-attempts", type=int,
                   help=f"tries per object read from object storage before an error row (default {READ_ATTEMPTS})")
    for opt in task.options:
        extra = {"metavar": opt.name.upper(), **opt.cli}
        p.add_argument(opt.flag, dest=f"option_{opt.name}", help=f"{opt.help} (default {opt.default})", **extra)
    if task.demo:
        p.add_argument("--demo", action="store_true", help="build a demo dataset from held-out photos and run it "
                                                           "locally")
    p.add_argument("--smoke", action="store_true",
                   help="one item end to end with few steps (tiny model unless --model)")
    return p


def build_config(task: Task, args: argparse.Namespace):
    """Defaults < --demo defaults < --config file < flags; validated (field named) before any model work."""
    from pipeline.config import JobConfig

    demo = getattr(args, "demo", False)
    values: dict = {}
    if demo:
        values.update(load_yaml(CONFIGS / "demo.yaml"))
    if args.config:
        values.update(load_yaml(args.config))
    if values.setdefault("task", task.name) != task.name:
        raise ValueError(f"config field 'task': the file says {values['task']!r} but this is fcs run {task.name}; "
                         f"use fcs run {values['task']} or drop the key")
    values.update({key: getattr(args, key) for key in JOB_FLAGS if getattr(args, key) is not None})
    options = dict(values.get("task_options") or {})
    options.update({o.name: getattr(args, f"option_{o.name}") for o in task.options
                    if getattr(args, f"option_{o.name}") is not None})
    sampler = dict(values.get("sampler") or {})
    sampler.update({k: v for k, v in (("steps", args.steps), ("newton_steps", args.newton_steps)) if v is not None})
    if args.smoke:
        values.setdefault("model", "tiny")
        values.setdefault("limit", 1)
        sampler.update({k: v for k, v in (("steps", 2), ("newton_steps", 1)) if getattr(args, k) is None})
        options = {**task.smoke, **options}
    values["sampler"], values["task_options"] = sampler, options
    if demo or (args.smoke and "input" not in values):
        values = _demo_values(values, args, smoke=args.smoke)
    for key in ("input", "output"):
        if not values.get(key):
            hint = " (or --demo / --smoke)" if task.demo else " (or --smoke)"
            raise ValueError(f"config field {key!r}: missing; give --{key} URI{hint}")
    return JobConfig.from_dict(values)


def load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config file {str(path)!r}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of job fields, got {type(data).__name__}")
    return data


def _demo_values(values: dict, args: argparse.Namespace, smoke: bool) -> dict:
    """Pick the model ($FCS_MODEL, else the built-in trained ``photo`` model; --smoke: tiny) and build
    the demo dataset at a size that model serves (for --smoke: one 64x64 photo with a generated mask)."""
    from jobs.demo import PHOTO_MODEL_SIZE, build_demo_dataset, demo_model

    if "model" not in values:
        values["model"] = "tiny" if smoke else demo_model()
    model = values["model"]
    cuda = _cuda()
    large = model not in ("tiny", "photo")  # a user's checkpoint, e.g. Stable Diffusion at 512²
    if large and not cuda and not smoke and not values["sampler"] and args.preset is None:
        log.warning("demo: no GPU here; using steps=10, newton_steps=2 at 256x256 to keep a CPU run to minutes")
        values["sampler"].update(steps=10, newton_steps=2)
    size = (512 if cuda else 256) if large else PHOTO_MODEL_SIZE
    log.info("demo: model %s at %dx%d", model, size, size)
    if smoke:
        folder = Path(tempfile.mkdtemp(prefix="fcs-smoke-"))
        values["input"] = str(build_demo_dataset(folder / "input", size=64, limit=1))
        values.setdefault("output", str(folder / values["task"]))
    elif not Path(values["input"], "images").exists():
        build_demo_dataset(values["input"], size=size)
    return values


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(task: str, argv: list[str] | None = None) -> int:
    """``fcs run <task> ARGV``; returns the exit code."""
    spec = TASKS[task]
    args = parser(spec).parse_args(argv)
    name = f"fcs run {task}"
    try:
        cfg = build_config(spec, args)
    except ValueError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    import pipeline
    from pipeline.summary import format_summary

    demo = getattr(args, "demo", False)
    if demo and not os.environ.get("RAY_ADDRESS"):
        import ray

        if not ray.is_initialized():
            ray.init(address="local")  # the demo never joins some other cluster running on this machine
    from ray.exceptions import RayError

    try:
        summary = pipeline.run(cfg)
    except Exception as exc:  # noqa: BLE001 - reported either way; committed work is kept
        if isinstance(exc, ValueError) and not isinstance(exc, RayError):  # not one raised inside a Ray task
            print(f"{name}: error: {exc}", file=sys.stderr)  # bad input location, ids or resources: no work done
            return 2
        log.error("job failed (%s: %s); committed rows are kept and a rerun resumes", type(exc).__name__, exc,
                  exc_info=True)
        return 1
    print(format_summary(summary))
    print(f"output: {summary['output']}\nsummary: {summary['summary_uri']}")
    if demo and not args.smoke:
        _previews(cfg)
    complete = summary["pending"] == 0 or cfg.limit is not None
    return 0 if complete and summary["duplicates"] == 0 else 1


def _previews(cfg) -> None:
    from jobs.demo import hole_psnr, write_previews
    from pipeline.output import read_output
    from pipeline.storage import Storage

    preview = Path(cfg.output).parent / "preview"
    restored = read_output(Storage.from_uri(cfg.output), columns=["id", "image", "seed"])
    count = write_previews(Path(cfg.input), restored, preview)
    print(f"previews (masked input | restored): {count} PNG(s) in {preview}"
          + ("" if cfg.model != "tiny" else "  [tiny random-weight model: the holes hold noise]"))
    scores = hole_psnr(Path(cfg.input), restored, cfg)
    if scores:
        print(f"hole PSNR, mean of {scores['items']} item(s) (the demo photos are whole, so the truth is known): "
              f"{cfg.sampler.method} (preset {cfg.preset}, {cfg.sampler.nfe_per_item} UNet calls) "
              f"{scores[cfg.sampler.method]:.2f} dB | replacement baseline "
              f"{scores['replacement']:.2f} dB (same model, seeds and steps, run here)")
    print(f"a rerun resumes and skips restored ids: delete {Path(cfg.output).parent} to start over")
