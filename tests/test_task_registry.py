"""Every task of the registry is complete: its ``fcs.tasks`` function of the one task signature, a
schema, CLI flags for its options, sampler defaults from ``fcs`` and a test file. Adding a task touches
three files (its ``fcs/tasks`` module, its registry entry, its tests; the recipe in CONTRIBUTING.md);
everything else (flags, help, job file keys, schema) is derived from the registry."""

from __future__ import annotations

import inspect
import pkgutil
from pathlib import Path

import pytest
import torch

import fcs.tasks
from fcs import SamplerConfig
from jobs import batch
from pipeline.config import JobConfig
from pipeline.schema import OUTPUT_SCHEMA
from pipeline.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = {"restore": "tests/test_inpaint.py"}  # the first task's tests predate tests/tasks/
SHARED = {"items", "decode"}  # fcs/tasks modules every task uses; each other module is one task


@pytest.mark.parametrize("name", list(TASKS))
def test_task_is_complete(name):
    task = TASKS[name]
    assert task.name == name and callable(task.run) and task.about and task.examples
    assert task.schema.names == OUTPUT_SCHEMA.names + list(task.extra_images)
    assert task.sampler_config({}) == task.sampler  # the task's defaults are fcs's, not a copy
    assert task.check_options({}) == {o.name: o.default for o in task.options}
    help_text = batch.parser(task).format_help()
    for option in task.options:
        assert option.flag in help_text and option.help.split()[0] in help_text
    assert (ROOT / TEST_FILES.get(name, f"tests/tasks/test_{name}.py")).exists()


@pytest.mark.parametrize("path", sorted(p for p in batch.CONFIGS.glob("*.yaml") if p.name != "demo.yaml"),
                         ids=lambda p: p.name)
def test_shipped_job_files_name_a_task_and_set_its_options(path):
    """The job files in jobs/configs are examples (not required per task); each one that exists loads."""
    example = batch.load_yaml(path)
    cfg = JobConfig.from_dict(example)
    assert cfg.task in TASKS and set(cfg.task_options) == {o.name for o in TASKS[cfg.task].options}


def test_sampler_defaults_differ_only_where_the_task_says():
    assert TASKS["restore"].sampler_config({}) == SamplerConfig()
    assert TASKS["superres"].sampler_config({}) == SamplerConfig(newton_steps=10, lr=0.1)
    assert TASKS["layers"].sampler_config({"steps": 4}) == SamplerConfig(steps=4, newton_steps=3)
    assert TASKS["superres"].sampler_config({}, "fast").lr == 0.1  # a preset keeps the task's own lr


def test_options_are_checked_once_with_defaults_and_names():
    assert TASKS["style"].check_options({"size": 64})["size"] == [64, 64]
    with pytest.raises(ValueError, match=r"'task_options\.pad': got 0, expected an integer >= 1"):
        TASKS["outpaint"].check_options({"pad": 0})
    with pytest.raises(ValueError, match=r"not an option of task 'outpaint' \(allowed: pad\)"):
        TASKS["outpaint"].check_options({"scale": 2})


@pytest.mark.parametrize("name", list(TASKS))
def test_task_runs_the_fcs_function_of_the_one_signature(name, sd, fcs_cache, monkeypatch):
    """run(denoiser, items, config=<the task's sampler defaults>, *, <keyword options>), and the keywords the
    registry builds from the checked options (once per actor) are options that ``run`` takes."""
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))  # style's tiny-clip is written there, not in ~/.cache
    task = TASKS[name]
    assert task.run.__module__ == f"fcs.tasks.{task.run.__module__.split('.')[-1]}" and task.run.__name__ == "run"
    signature = inspect.signature(task.run)
    params = list(signature.parameters.values())
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert [(p.name, p.kind) for p in params[:3]] == [(n, positional) for n in ("denoiser", "items", "config")]
    assert params[2].default == task.sampler  # one place for the task's sampler defaults
    options = {p.name: p for p in params[3:]}
    assert all(p.kind is p.KEYWORD_ONLY for p in options.values()), [p.kind for p in options.values()]
    assert signature.return_annotation == "list[TaskResult]"
    keywords = task.keywords(sd, task.check_options(task.smoke))
    assert set(keywords) <= set(options), f"{name}: run takes no {sorted(set(keywords) - set(options))}"
    required = {n for n, p in options.items() if p.default is p.empty}
    assert required <= set(keywords), f"{name}: the registry never passes {sorted(required - set(keywords))}"


def test_adding_a_task_is_its_fcs_module_and_a_registry_entry():
    modules = {m.name for m in pkgutil.iter_modules(fcs.tasks.__path__)} - SHARED
    registered = {task.run.__module__.removeprefix("fcs.tasks.") for task in TASKS.values()}
    assert registered == modules, f"task modules without a registry entry: {sorted(modules - registered)}"
    assert set(fcs.tasks.__all__) >= modules


def test_style_keywords_load_clip_once_and_check_the_size(sd, fcs_cache, monkeypatch):
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    task = TASKS["style"]
    keywords = task.keywords(sd, task.check_options(task.smoke))
    assert isinstance(keywords["clip"], torch.nn.Module) and keywords["size"] == (64, 64)
    with pytest.raises(ValueError, match=r"'task_options\.size': \[72, 72\] is not a multiple of"):
        task.keywords(sd, task.check_options({**task.smoke, "size": [72, 72]}))
