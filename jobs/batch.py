"""``fcs run <task>``: its flags, its config merging, running it, its exit code, for every task of
:data:`pipeline.tasks.TASKS` (the task's options become flags, its ``about`` and ``examples`` the help).

Exit codes: 0 done (error rows included; they are reported), 1 the job failed or ids are missing or
duplicated in the output, 2 bad configuration or input, or an output held by another live run (nothing was run).
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
from fcs.settings import add_flags, given, settings_of
from pipeline.config import GROUPS, JobConfig
from pipeline.sources import AUTO, input_options
from pipeline.tasks import TASKS, Task

SMOKE_MODEL = "tiny"  # --smoke's model unless --model: random weights, seconds per item

CONFIGS = Path(__file__).parent / "configs"
log = logging.getLogger("fcs.jobs")
JOB_SETTINGS = settings_of(JobConfig)
SAMPLER_SETTINGS = settings_of(SamplerConfig)
# argparse dest prefixes of the sampler's, the task's and the input format's flags
SAMPLER, OPTION, INPUT = "sampler_", "option_", "input_"
INPUT_SETTINGS = input_options(AUTO)  # every input format's options (each job checks its own format's)
EXIT = "exit codes: 0 done (error rows included), 1 the job failed or ids are missing or duplicated,\n" \
       "2 bad configuration or input, or the output is in use by another live run (nothing was run)"


def parser(task: Task) -> argparse.ArgumentParser:
    """``fcs run <task>``'s flags, derived from the declarations of JobConfig, SamplerConfig and the task's
    options (each flag's help is its setting's, with the default this task gets)."""
    p = argparse.ArgumentParser(prog=f"fcs run {task.name}", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=task.about, epilog=f"examples:\n{task.examples}\n\n{EXIT}")
    p.add_argument("--config", type=Path, help=f"YAML job file of the fields below (see jobs/configs/{task.name}.yaml; "
                                               "sampler fields under sampler:, task options under task_options:, "
                                               "input format options under input_options:); "
                                               "flags override it")
    sections = {None: p, **{name: p.add_argument_group(name) for name in GROUPS}}
    add_flags(sections, JOB_SETTINGS)
    add_flags(sections, INPUT_SETTINGS, dest_prefix=INPUT, group="input")
    add_flags(sections, task.options, dest_prefix=OPTION, group="task")
    add_flags(sections, SAMPLER_SETTINGS, dest_prefix=SAMPLER, defaults=task.sampler.to_dict(), group="sampler")
    if task.demo:
        p.add_argument("--demo", action="store_true", help="build a demo dataset from held-out photos and run it "
                                                           "locally (the built-in photo model unless --model)")
    p.add_argument("--smoke", action="store_true",
                   help="one item end to end with few steps (the tiny random-weight model unless --model)")
    return p


def build_config(task: Task, args: argparse.Namespace) -> JobConfig:
    """Defaults < --demo defaults < --config file < flags; validated (field named) before any model work."""
    demo = getattr(args, "demo", False)
    values: dict = {}
    if demo:
        values.update(load_yaml(CONFIGS / "demo.yaml"))
    if args.config:
        values.update(load_yaml(args.config))
    if values.setdefault("task", task.name) != task.name:
        raise ValueError(f"config field 'task': the file says {values['task']!r} but this is fcs run {task.name}; "
                         f"use fcs run {values['task']} or drop the key")
    values.update(given(args, JOB_SETTINGS))
    options = {**(values.get("task_options") or {}), **given(args, task.options, OPTION)}
    values["input_options"] = {**(values.get("input_options") or {}), **given(args, INPUT_SETTINGS, INPUT)}
    flags = given(args, SAMPLER_SETTINGS, SAMPLER)
    sampler = {**(values.get("sampler") or {}), **flags}
    if args.smoke:
        values.setdefault("model", SMOKE_MODEL)
        values.setdefault("limit", 1)
        sampler.update({k: v for k, v in (("steps", 2), ("newton_steps", 1)) if k not in flags})
        options = {**task.smoke, **options}
    values["sampler"], values["task_options"] = sampler, options
    if demo or (args.smoke and "input" not in values):
        values = _demo_values(values, args, smoke=args.smoke)
    for spec in JOB_SETTINGS:
        if spec.required and not values.get(spec.name):
            hint = "--demo / --smoke" if task.demo else "--smoke"
            raise ValueError(f"config field {spec.name!r}: missing; give {spec.flag} ({spec.help.split(';')[0]}) "
                             f"or {hint}")
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
        values["model"] = SMOKE_MODEL if smoke else demo_model()
    model = values["model"]
    cuda = _cuda()
    large = model not in (SMOKE_MODEL, "photo")  # a user's checkpoint, e.g. Stable Diffusion at 512²
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
              f"{cfg.sampler.method} ({_settings_name(cfg)}, {cfg.sampler.nfe_per_item} UNet calls) "
              f"{scores[cfg.sampler.method]:.2f} dB | replacement baseline "
              f"{scores['replacement']:.2f} dB (same model, seeds and steps, run here)")
    print(f"a rerun resumes and skips restored ids: delete {Path(cfg.output).parent} to start over")


def _settings_name(cfg) -> str:
    """What the demo ran, as its line says it: a tuning record's candidate, or the preset."""
    where = {"model": "the model's tuning record", "tuning": "the tuning record"}.get(cfg.applied.source)
    return f"{cfg.applied.candidate} from {where}" if where and cfg.applied.candidate else f"preset {cfg.preset}"
