"""Named presets: paper is exactly the paper's settings per task, fast spends at most 70 UNet forwards
per item, cg stays within its task's budget, a model folder's recommendation applies unless a preset is
named, explicit settings win, and every entry point takes the preset."""

from __future__ import annotations

import json

import pytest

from fcs import SamplerConfig
from fcs.presets import DEFAULT_PRESET, PRESETS, recommended_preset, with_preset
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


def test_a_model_folder_recommends_its_preset_and_a_named_one_still_wins(tmp_path):
    (tmp_path / "sampler.json").write_text(json.dumps({"preset": "cg", "measured": {}}))
    recommended = JobConfig(input="i", output="o", model=str(tmp_path))
    assert recommended.preset == "cg" and recommended.sampler == with_preset(SamplerConfig(), "cg")
    assert JobConfig(input="i", output="o", model=str(tmp_path), preset="paper").sampler == SamplerConfig()
    explicit = JobConfig(input="i", output="o", model=str(tmp_path), sampler={"newton_steps": 1})
    assert (explicit.sampler.inner, explicit.sampler.newton_steps) == ("cg", 1)
    assert JobConfig(input="i", output="o", model="tiny").preset == DEFAULT_PRESET  # recommends nothing


def test_a_bad_recommendation_names_its_file(tmp_path):
    (tmp_path / "sampler.json").write_text(json.dumps({"preset": "turbo"}))
    with pytest.raises(ValueError, match="sampler.json.*one of paper, fast, cg"):
        JobConfig(input="i", output="o", model=str(tmp_path))


def test_the_shipped_models_recommendation_is_the_rule_applied_to_its_own_measurements():
    """benchmarks/recommend.py wrote it from training images; the file holds the numbers it chose on."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from recommend import FOLDERS, recommend

    for folder in FOLDERS.values():
        record = json.loads((folder / "sampler.json").read_text())
        assert recommended_preset(folder) == record["preset"] == recommend(record["measured"])
        assert set(record["measured"]) == set(PRESETS)
