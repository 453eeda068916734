"""Every job and sampler setting is declared once (:mod:`fcs.settings`): the ``fcs run`` flag, the YAML
key and the ``--help`` line of each come from that one declaration."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest
import yaml

from fcs.config import SamplerConfig
from fcs.settings import settings_of
from jobs import batch
from jobs.cli import main as cli_main
from pipeline.config import GROUPS, JobConfig
from pipeline.sources import AUTO, input_options
from pipeline.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]
BASE = {"input": "in", "output": "out", "model": "tiny"}
# a value other than the default for each job setting with a flag: (command line, value in the config)
def _record() -> str:
    """A tuning record for the tiny model (matched by name: no fingerprint), for the --tuning sample."""
    import json
    import tempfile

    from fcs import SamplerConfig
    from fcs.tuning import record

    made = {"format": record.FORMAT, "task": "restore", "model": {"id": "tiny", "fingerprint": None}, "rule": {},
            "items": {}, "candidates": [], "chosen": {"name": "cg", "settings": SamplerConfig(steps=3).to_dict()}}
    path = Path(tempfile.mkdtemp()) / "tuning.json"
    path.write_text(json.dumps(made))
    return str(path)


RECORD = _record()
SAMPLES = {
    "input": (["--input", "elsewhere"], "elsewhere"),
    "input_format": (["--input-format", "parquet"], "parquet"),
    "keep_columns": (["--keep-columns", "a", "b"], ("a", "b")),
    "s3_endpoint": (["--s3-endpoint", "http://localhost:9000"], "http://localhost:9000"),
    "read_attempts": (["--read-attempts", "2"], 2),
    "max_side": (["--max-side", "512"], 512),
    "limit": (["--limit", "3"], 3),
    "output": (["--output", "elsewhere-out"], "elsewhere-out"),
    "rows_per_file": (["--rows-per-file", "7"], 7),
    "retry_errors": (["--retry-errors"], "all"),
    "model": (["--model", "tiny-v"], "tiny-v"),
    "actors": (["--actors", "3"], 3),
    "batch_size": (["--batch-size", "2"], 2),
    "gpus_per_actor": (["--gpus-per-actor", "0.5"], 0.5),
    "cpus_per_actor": (["--cpus-per-actor", "1"], 1.0),
    "device": (["--device", "cpu"], "cpu"),
    "dtype": (["--dtype", "bfloat16"], "bfloat16"),
    "actor_start_timeout_s": (["--actor-start-timeout-s", "60"], 60),
    "compile_unet": (["--compile-unet"], True),
    "channels_last": (["--channels-last"], True),
    "pad_batches": (["--pad-batches"], True),
    "prompt": (["--prompt", "a cat"], "a cat"),
    "preset": (["--preset", "fast"], "fast"),
    "threads": (["--threads", "3"], 3),
    "tuning": (["--tuning", RECORD], RECORD),
}
# the command names the task; the task's, the input format's and the sampler's settings have flags of their own
NO_FLAG = {"task", "task_options", "input_options", "sampler"}
# the same for the input formats' options (input_options: in a job file)
INPUT_SAMPLES = {
    "image_suffixes": (["--image-suffixes", "png", ".jpg"], ("png", "jpg")),
    "mask_suffix": (["--mask-suffix", "m.png"], "m.png"),
    "prompt_suffix": (["--prompt-suffix", "txt"], "txt"),
}


def _config(task: str, argv: list[str]) -> JobConfig:
    spec = TASKS[task]
    return batch.build_config(spec, batch.parser(spec).parse_args(argv))


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_job_setting_has_a_sample_and_a_group():
    specs = settings_of(JobConfig)
    assert {s.name for s in specs} == {f for f in JobConfig.__dataclass_fields__}  # every field is declared
    assert {s.name for s in specs if s.cli is not None} == set(SAMPLES)
    assert {s.name for s in specs if s.cli is None} == NO_FLAG
    assert all(s.group in GROUPS and s.help for s in specs)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_flag_and_yaml_key_set_the_same_field(name, tmp_path):
    argv, value = SAMPLES[name]
    base = [a for key, v in BASE.items() if key != name for a in (f"--{key}", v)]
    from_flag = _config("restore", [*base, *argv])
    assert getattr(from_flag, name) == value
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, name: list(value) if isinstance(value, tuple) else value}))
    from_file = _config("restore", ["--config", str(path)])
    assert getattr(from_file, name) == value
    assert from_file == from_flag


@pytest.mark.parametrize("name", sorted(INPUT_SAMPLES))
def test_input_format_flag_and_yaml_key_set_the_same_option(name, tmp_path):
    assert {o.name for o in input_options(AUTO)} == set(INPUT_SAMPLES)
    argv, value = INPUT_SAMPLES[name]
    from_flag = _config("restore", [*[a for k, v in BASE.items() for a in (f"--{k}", v)], *argv])
    assert from_flag.input_options[name] == value
    path = tmp_path / "job.yaml"
    option = {name: list(value) if isinstance(value, tuple) else value}
    path.write_text(yaml.safe_dump({**BASE, "input_options": option}))
    assert _config("restore", ["--config", str(path)]) == from_flag


@pytest.mark.parametrize("task", sorted(TASKS))
def test_help_is_the_declaration(task):
    actions = _actions(batch.parser(TASKS[task]))
    for spec in settings_of(JobConfig):
        if spec.cli is not None:
            assert actions[spec.flag].dest == spec.name and actions[spec.flag].help.startswith(spec.help), spec.name
    for spec in (*input_options(AUTO), *TASKS[task].options):
        assert actions[spec.flag].help.startswith(spec.help), spec.name
    defaults = TASKS[task].sampler.to_dict()
    for spec in settings_of(SamplerConfig):  # every sampler setting, with this task's default
        shown = defaults[spec.name]
        text = actions[spec.flag].help
        assert text.startswith(spec.help), spec.name
        if shown is not None and not isinstance(shown, bool):
            assert f"(default {shown})" in text, (spec.name, text)


def test_fcs_inpaint_has_every_sampler_flag_of_fcs_run(capsys):
    with pytest.raises(SystemExit):
        cli_main(["inpaint", "--help"])
    text = capsys.readouterr().out
    run = _actions(batch.parser(TASKS["restore"]))
    for spec in settings_of(SamplerConfig):
        assert spec.flag in text and spec.flag in run, spec.name
    for flag in ("--model", "--device", "--dtype", "--preset"):
        assert flag in text and flag in run


def test_sampler_flags_reach_the_config():
    got = _config("superres", [*[a for k, v in BASE.items() for a in (f"--{k}", v)], "--inner", "cg", "--newton-steps",
                               "2", "--lr", "0.3", "0.2", "--no-composite", "--jacobian", "jvp", "--tol", "0.01"])
    assert (got.sampler.inner, got.sampler.newton_steps, got.sampler.lr) == ("cg", 2, (0.3, 0.2))
    assert (got.sampler.composite, got.sampler.jacobian, got.sampler.tol) == (False, "jvp", 0.01)
    assert got.sampler.steps == TASKS["superres"].sampler.steps  # the task's default where no flag is given


def test_the_job_cli_declares_no_setting_of_its_own():
    """jobs/ adds only --config, --demo and --smoke, and lists no setting names of its own (a list of
    field names beside the declarations is how a setting ends up declared twice)."""
    names = {s.name for s in settings_of(JobConfig)} | {s.name for s in settings_of(SamplerConfig)}
    added, lists, exempt = [], [], set()
    for path in sorted((ROOT / "jobs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args:
                if path.name == "batch.py" and isinstance(node.args[0], ast.Constant):
                    added.append(node.args[0].value)
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NOT_FOR_TUNING":
                exempt.add(id(node.value))  # which job settings fcs tune leaves out: names, not declarations
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in exempt:
                listed = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
                if len(listed) >= 3:
                    lists.append(f"{path.name}:{node.lineno} {listed}")
    assert sorted(added) == ["--config", "--demo", "--smoke"]
    assert lists == []


def test_a_batch_job_without_a_model_fails_before_any_work(capsys):
    assert batch.main("restore", ["--input", "in", "--output", "out"]) == 2
    err = capsys.readouterr().err
    assert "config field 'model': missing; give --model" in err
    with pytest.raises(ValueError, match="config field 'model': missing"):
        JobConfig.from_dict({"input": "in", "output": "out"})
