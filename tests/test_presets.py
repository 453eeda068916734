"""Named presets: paper is exactly the paper's settings per task, fast spends at most 70 UNet forwards
per item, cg stays within its task's budget, the shipped models' own tuning records are the tuner's,
explicit settings win, and every entry point takes the preset (the order of precedence:
tests/tuning/test_records.py)."""

from __future__ import annotations

import pytest

from fcs import SamplerConfig
from fcs.presets import PRESETS, with_preset
from fcs.tasks.superres import SR_DEFAULTS
from jobs import batch
from pipeline.config import JobConfig
from pipeline.tasks import TASKS


def test_paper_is_the_papers_settings():
    assert with_preset(SamplerConfig(), "paper") == SamplerConfig(steps=20, newton_steps=5, lr=None, h=0.005)
    assert SamplerConfig().nfe_per_item == 220
    assert JobConfig(model="tiny", input="i", output="o", task="superres", preset="paper").sampler == SR_DEFAULTS


@pytest.mark.parametrize("task", ["restore", "superres", "outpaint"])
def test_fast_spends_at_most_70_forwards(task):
    config = JobConfig(model="tiny", input="i", output="o", task=task, preset="fast").sampler
    assert config.method == "newton" and config.nfe_per_item <= 70
    assert config.lr == TASKS[task].sampler.lr  # the task's own lr (SR: 0.1) is kept


def test_explicit_settings_win_over_the_preset():
    cfg = JobConfig(model="tiny", input="i", output="o", preset="fast", sampler={"steps": 12})
    assert (cfg.sampler.steps, cfg.sampler.newton_steps) == (12, PRESETS["fast"]["newton_steps"])
    args = batch.parser(TASKS["restore"]).parse_args(["--input", "i", "--output", "o", "--model", "tiny",
                                                      "--preset", "fast", "--newton-steps", "1"])
    got = batch.build_config(TASKS["restore"], args)
    assert (got.preset, got.sampler.steps, got.sampler.newton_steps) == ("fast", PRESETS["fast"]["steps"], 1)


def test_unknown_preset_names_the_field():
    with pytest.raises(ValueError, match="config field 'preset'.*one of paper, fast, cg"):
        JobConfig(model="tiny", input="i", output="o", preset="turbo")


def test_fcs_inpaint_takes_the_preset(model_dirs, tmp_path, caplog):
    """``fcs inpaint --preset fast --steps 2``: the fast K with the explicit S, seen in the UNet calls."""
    import logging

    import numpy as np
    from PIL import Image

    from jobs.cli import main

    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    with caplog.at_level(logging.INFO, logger="fcs"):
        code = main(["inpaint", "--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"),
                     "--out", str(tmp_path / "o.png"), "--model", str(model_dirs["tiny"]), "--device", "cpu",
                     "--preset", "fast", "--steps", "2"])
    assert code == 0 and (tmp_path / "o.png").exists()
    assert f"nfe={2 * (1 + 2 * PRESETS['fast']['newton_steps'])}" in caplog.text


@pytest.mark.parametrize("task, budget", [("restore", 50), ("outpaint", 50), ("superres", 100)])
def test_cg_stays_within_the_call_budget_of_its_task(task, budget):
    config = JobConfig(model="tiny", input="i", output="o", task=task, preset="cg").sampler
    assert config.inner == "cg" and config.nfe_per_item <= budget and config.lr is None


def test_the_shipped_models_records_are_the_tuners_rule_applied_to_their_own_measurements():
    """benchmarks/recommend.py tuned each on its training images (fcs.tuning.local): every record is for
    its model's current weights, and the rule applied to its numbers gives its choice, which a job runs."""
    from pathlib import Path

    from fcs.tuning import choice, record

    folders = {"photo": Path(__file__).parents[1] / "fcs" / "models" / "photo",
               "digits": Path(__file__).parents[1] / "benchmarks" / "reference_model"}
    for name, folder in folders.items():
        model = "photo" if name == "photo" else str(folder)
        records = sorted((folder / record.MODEL_RECORDS).glob("*.json"))
        assert "restore.json" in [p.name for p in records], f"{name} has no restore record"
        for path in records:
            made = record.read(path)
            record.check(made, str(path), task=path.stem, model=model)
            rule = made["rule"]
            assert choice.choose(made["candidates"], rule["tolerance_db"], rule["max_calls"])["name"] \
                == made["chosen"]["name"]
            cfg = JobConfig(input="i", output="o", model=model, task=path.stem)
            assert cfg.applied.source == "model" and cfg.sampler == record.settings(made)
