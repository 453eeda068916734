"""Every task of the registry is complete: a runner, a schema, CLI flags for its options, sampler
defaults from ``fcs``, a job config example that loads, a section in docs/jobs.md and a test file
(the recipe in CONTRIBUTING.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcs import SamplerConfig
from jobs import batch
from pipeline.config import JobConfig
from pipeline.schema import OUTPUT_SCHEMA
from pipeline.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = {"restore": "tests/test_inpaint.py"}  # the first task's tests predate tests/tasks/


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
    example = batch.load_yaml(batch.CONFIGS / f"{name}.yaml")
    cfg = JobConfig.from_dict(example)
    assert cfg.task == name and set(cfg.task_options) == {o.name for o in task.options}
    assert f"**`fcs run {name}`**" in (ROOT / "docs" / "jobs.md").read_text(), "docs/jobs.md section missing"
    assert (ROOT / TEST_FILES.get(name, f"tests/tasks/test_{name}.py")).exists()


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
