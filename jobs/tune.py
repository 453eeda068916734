"""``fcs tune <task>``: measure sampler candidates on problems made from the user's own data and write
the settings to run (``<output>/tuning.json``) and a report page (``<output>/report.html``).

    fcs tune restore --model photo --input demo-output/input --output tuned
    fcs run restore --model photo --input demo-output/input --output out --tuning tuned/tuning.json

Exit codes: 0 tuned, 1 the job failed, 2 bad configuration or input (too few usable items, a task
without a ground truth, an output holding another tuning run), nothing chosen.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fcs.settings import add_flags, given, settings_of
from fcs.tuning.problems import NO_TRUTH
from fcs.tuning.problems import TASKS as TUNABLE
from fcs.tuning.record import RECORD
from jobs.batch import INPUT, INPUT_SETTINGS, JOB_SETTINGS, OPTION, SAMPLER, SAMPLER_SETTINGS, load_yaml
from pipeline.config import GROUPS, JobConfig
from pipeline.storage import Storage
from pipeline.tasks import TASKS, Task
from pipeline.tuning import TuneConfig

log = logging.getLogger("fcs.jobs")
NOT_FOR_TUNING = {"limit", "rows_per_file", "retry_errors", "keep_columns", "preset", "tuning", "task", "pad_batches"}
TUNE_SETTINGS = settings_of(TuneConfig)
EXIT = "exit codes: 0 tuned, 1 the job failed, 2 bad configuration or input (nothing chosen)"


def parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"fcs tune {task.name}", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT,
        description=f"Find the cheapest sampler settings that are as good as the best for {task.name} on this model "
                    "and this data: problems with known answers are made from the input items, every candidate "
                    "samples them on Ray (as fcs run does), and the choice is written to OUTPUT/tuning.json "
                    f"for fcs run {task.name} --tuning. Sampler flags given here are held fixed.")
    p.add_argument("--config", type=Path, help="YAML file of the fields below (sampler fields under sampler:, task "
                                               "options under task_options:); flags override it")
    sections = {None: p, **{name: p.add_argument_group(name) for name in (*GROUPS, "tuning")}}
    add_flags(sections, [s for s in JOB_SETTINGS if s.name not in NOT_FOR_TUNING])
    add_flags(sections, INPUT_SETTINGS, dest_prefix=INPUT, group="input")
    add_flags(sections, task.options, dest_prefix=OPTION, group="task")
    add_flags(sections, SAMPLER_SETTINGS, dest_prefix=SAMPLER, defaults=task.sampler.to_dict(), group="sampler")
    add_flags(sections, TUNE_SETTINGS, group="tuning")
    return p


def build(task: Task, args: argparse.Namespace) -> tuple[JobConfig, TuneConfig, dict]:
    """(the job's settings, the tuning's, the sampler fields held fixed): file < flags, validated."""
    values = load_yaml(args.config) if args.config else {}
    if values.setdefault("task", task.name) != task.name:
        raise ValueError(f"config field 'task': the file says {values['task']!r} but this is fcs tune {task.name}")
    tune_names = {s.name for s in TUNE_SETTINGS}
    tune = {k: values.pop(k) for k in list(values) if k in tune_names}
    tune.update(given(args, TUNE_SETTINGS))
    values.update(given(args, JOB_SETTINGS))
    values["task_options"] = {**(values.get("task_options") or {}), **given(args, task.options, OPTION)}
    values["input_options"] = {**(values.get("input_options") or {}), **given(args, INPUT_SETTINGS, INPUT)}
    held = {**(values.pop("sampler", None) or {}), **given(args, SAMPLER_SETTINGS, SAMPLER)}
    for spec in JOB_SETTINGS:
        if spec.required and not values.get(spec.name):
            raise ValueError(f"config field {spec.name!r}: missing; give {spec.flag} ({spec.help.split(';')[0]})")
    # the job's own settings are the candidates' (the tuning actor runs each row with its candidate's)
    cfg = JobConfig.from_dict({**values, "sampler": held, "preset": "paper"})
    return cfg, TuneConfig(**tune), held


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in NO_TRUTH:
        print(f"fcs tune {argv[0]}: error: cannot tune: {NO_TRUTH[argv[0]]}; tunable tasks: {', '.join(TUNABLE)}",
              file=sys.stderr)
        return 2
    if not argv or argv[0] not in TUNABLE:
        print(f"usage: fcs tune {{{','.join(TUNABLE)}}} --model M --input URI --output URI [options]", file=sys.stderr)
        return 2
    spec, name = TASKS[argv[0]], f"fcs tune {argv[0]}"
    args = parser(spec).parse_args(argv[1:])
    try:
        cfg, tune, held = build(spec, args)
    except ValueError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    from ray.exceptions import RayError

    from pipeline import tuning

    try:
        record = tuning.run(cfg, tune, held)
    except Exception as exc:  # noqa: BLE001 - reported either way; committed samples are kept
        if isinstance(exc, ValueError) and not isinstance(exc, RayError):
            print(f"{name}: error: {exc}", file=sys.stderr)
            return 2
        log.error("tuning failed (%s: %s); committed samples are kept and a rerun resumes", type(exc).__name__, exc,
                  exc_info=True)
        return 1
    from jobs.tune_report import write_report

    report = write_report(cfg.output, record, cfg.s3_endpoint)
    print(format_record(record))
    out = Storage.from_uri(cfg.output, cfg.s3_endpoint)
    made = out.uri(out.path(RECORD))
    print(f"record: {made}\nreport: {report}\nrun it: fcs run {cfg.task} --model {cfg.model} --input ... --output ... "
          f"--tuning {made}")
    return 0


def format_record(record: dict) -> str:
    """The candidates as a text table, the chosen one marked."""
    lines = [f"{'':2}{'candidate':28} {'calls':>6} {'PSNR dB (95% CI)':>22} {'vs best dB':>17} {'SSIM':>6} "
             f"{'detail':>6} {'s/item':>7}"]
    for c in sorted(record["candidates"], key=lambda c: c["calls"]):
        if not c["psnr"]:
            lines.append(f"  {c['name']:28} {c['calls']:6g}  failed: {c['error']}")
            continue
        mark = "*" if c["name"] == record["chosen"]["name"] else " "
        psnr = f"{c['psnr']['mean']:.2f} ({c['psnr']['low']:.2f}-{c['psnr']['high']:.2f})"
        d = c.get("psnr_vs_best")
        delta = f"{d['mean']:+.2f} ({d['low']:+.2f},{d['high']:+.2f})" if d else ""
        lines.append(f"{mark} {c['name']:28} {c['calls']:6g} {psnr:>22} {delta:>17} {c['ssim']['mean']:6.3f} "
                     f"{c['detail']['mean']:6.2f} {c['sample_s']:7.2f}" + ("" if c["complete"] else "  (incomplete)"))
    lines.append(f"rule: {record['rule']['text']}")
    took = f" in {record['wall_s']:.0f} s" if record.get("wall_s") is not None else ""
    lines.append(f"chosen: {record['chosen']['name']} on {record['items']['used']} problem(s) from "
                 f"{record['items']['read']} item(s) read{took}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
