"""``fcs run restore``: inpainting restoration of a dataset on Ray (config -> pipeline -> summary).

    fcs run restore --input s3://bucket/damaged/ --output s3://bucket/restored/ \\
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --actors 8 --batch-size 4
    fcs run restore --demo       # sample photos + generated masks, local Ray, ./demo-output
    fcs run restore --smoke      # one item end to end (tiny model unless --model)

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

CONFIGS = Path(__file__).parent / "configs"
log = logging.getLogger("fcs.restore")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcs run restore", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Restore the masked regions of a dataset's images on Ray (inexact-Newton sampler) and "
                    "write one Parquet row per input id.",
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--input", help="Parquet shards or a folder with images/ + masks/ "
                                   "(path or s3://, gs://, file:// URI)")
    p.add_argument("--output", help="output folder or prefix (part-*.parquet, _summary.json); reruns resume")
    p.add_argument("--model", help="hub id, local diffusers folder, or 'tiny' (built-in random-weight model)")
    p.add_argument("--actors", type=int, help="sampler actors, one resident model each (default 1)")
    p.add_argument("--batch-size", type=int, help="items per sampler call (default 4)")
    p.add_argument("--config", type=Path, help="YAML job file (see jobs/configs/restore.yaml); flags override it")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--steps", type=int, help="S outer DDIM steps (default 20)")
    p.add_argument("--newton-steps", type=int, help="K inner Newton steps per outer step (default 5)")
    p.add_argument("--prompt", help="prompt for rows without one (default empty)")
    p.add_argument("--gpus-per-actor", type=float, help="default auto: 1 when the cluster has GPUs, else CPU")
    p.add_argument("--device", help="torch device for the sampler (default auto)")
    p.add_argument("--dtype", help="auto (fp16 on CUDA), float32, float16, bfloat16")
    p.add_argument("--limit", type=int, help="process at most this many pending items")
    p.add_argument("--demo", action="store_true", help="build a demo dataset from sample photos and restore it locally")
    p.add_argument("--smoke", action="store_true", help="one item end to end with few steps")
    return p


FLAGS = {"input": "input", "output": "output", "model": "model", "actors": "actors", "batch_size": "batch_size",
         "s3_endpoint": "s3_endpoint", "prompt": "prompt", "gpus_per_actor": "gpus_per_actor", "device": "device",
         "dtype": "dtype", "limit": "limit"}


def build_config(args: argparse.Namespace):
    """Defaults < --demo defaults < --config file < flags; validated (field named) before any model work."""
    from pipeline.config import JobConfig

    values: dict = {}
    if args.demo:
        values.update(_load_yaml(CONFIGS / "demo.yaml"))
    if args.config:
        values.update(_load_yaml(args.config))
    values.update({key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None})
    sampler = dict(values.get("sampler") or {})
    sampler.update({k: v for k, v in (("steps", args.steps), ("newton_steps", args.newton_steps)) if v is not None})
    if args.smoke:
        values.setdefault("model", "tiny")
        values.setdefault("limit", 1)
        sampler.update({k: v for k, v in (("steps", 2), ("newton_steps", 1)) if getattr(args, k) is None})
    values["sampler"] = sampler
    if args.demo or (args.smoke and "input" not in values):
        values = _demo_values(values, args, smoke=args.smoke)
    for key in ("input", "output"):
        if not values.get(key):
            raise ValueError(f"config field {key!r}: missing; give --{key} URI (or --demo / --smoke)")
    return JobConfig.from_dict(values)


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config file {str(path)!r}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of job fields, got {type(data).__name__}")
    return data


def _demo_values(values: dict, args: argparse.Namespace, smoke: bool) -> dict:
    """Pick the model (real SD if available, else tiny, said clearly), build the demo dataset."""
    from pipeline.demo import build_demo_dataset, find_sd_checkpoint

    if "model" not in values:
        found = None if smoke else find_sd_checkpoint()
        if found:
            log.info("demo: using the Stable Diffusion checkpoint %s", found)
        elif not smoke:
            log.warning("demo: no Stable Diffusion checkpoint found (set FCS_MODEL to a hub id or folder, or download "
                        "stable-diffusion-v1-5/stable-diffusion-v1-5 into the Hugging Face cache); FALLING BACK to the "
                        "built-in tiny random-weight model, so restored regions will be noise, not photos")
        values["model"] = found or "tiny"
    real = values["model"] != "tiny"
    cuda = _cuda()
    if real and not cuda and args.steps is None and not smoke:
        log.warning("demo: no GPU here; using steps=10, newton_steps=2 at 256x256 to keep a CPU run to minutes")
        values["sampler"].update(steps=10, newton_steps=2)
    size = 512 if real and cuda else 256 if real else 128
    if smoke:
        folder = Path(tempfile.mkdtemp(prefix="fcs-smoke-"))
        values["input"] = str(build_demo_dataset(folder / "input", size=64, limit=1))
        values.setdefault("output", str(folder / "restored"))
    elif not Path(values["input"], "images").exists():
        build_demo_dataset(values["input"], size=size)
    return values


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = build_config(args)
    except ValueError as exc:
        print(f"fcs run restore: error: {exc}", file=sys.stderr)
        return 2
    import pipeline
    from pipeline.summary import format_summary

    if args.demo and not os.environ.get("RAY_ADDRESS"):
        import ray

        if not ray.is_initialized():
            ray.init(address="local")  # the demo never joins some other cluster running on this machine
    try:
        summary = pipeline.run(cfg)
    except ValueError as exc:  # bad input location, ids or resources: said before any model work
        print(f"fcs run restore: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the job failed; committed work is kept, a rerun resumes
        log.error("job failed (%s: %s); committed rows are kept and a rerun resumes", type(exc).__name__, exc,
                  exc_info=True)
        return 1
    print(format_summary(summary))
    print(f"output: {summary['output']}\nsummary: {summary['summary_uri']}")
    if args.demo and not args.smoke:
        _previews(cfg)
    complete = summary["pending"] == 0 or cfg.limit is not None
    return 0 if complete and summary["duplicates"] == 0 else 1


def _previews(cfg) -> None:
    from pipeline.demo import write_previews
    from pipeline.output import read_output
    from pipeline.storage import Storage

    preview = Path(cfg.output).parent / "preview"
    count = write_previews(Path(cfg.input), read_output(Storage.from_uri(cfg.output), columns=["id", "image"]), preview)
    print(f"previews (masked input | restored): {count} PNG(s) in {preview}"
          + ("" if cfg.model != "tiny" else "  [tiny random-weight model: the holes hold noise]"))
    print(f"a rerun resumes and skips restored ids: delete {Path(cfg.output).parent} to start over")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
