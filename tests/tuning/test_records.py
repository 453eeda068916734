"""Tuning records: their format errors, the refusal of another model's or task's record, which settings
a run applies (explicit > preset > record > the model's own > default), the rule and the candidates."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from fcs import FastConstrainedInpaintPipeline, SamplerConfig
from fcs.presets import DEFAULT_PRESET, with_preset
from fcs.tuning import choice, parse_candidate, record
from fcs.tuning.apply import sampler_for
from fcs.tuning.candidates import default_candidates, resolve
from pipeline.config import JobConfig


def made_for(model: str, task: str = "restore", settings: dict | None = None, fingerprint: bool = True) -> dict:
    config = SamplerConfig(**(settings or {"steps": 7, "newton_steps": 1, "inner": "cg"}))
    return {"format": record.FORMAT, "task": task, "model": {"id": model, "fingerprint": record.fingerprint(model)
                                                             if fingerprint else None},
            "rule": {}, "items": {}, "candidates": [],
            "chosen": {"name": "cg:steps=7,newton_steps=1", "preset": "cg", "changes": {"steps": 7},
                       "settings": config.to_dict()}}


def write(path, data) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


@pytest.mark.parametrize("content, message", [
    (None, "cannot be read.*write one with fcs tune"),
    ("{not json", "is not valid JSON"),
    ('["a"]', "is not a JSON object"),
    ({"preset": "cg", "measured": {}}, "older format \\(a preset recommendation written before fcs tune\\)"),
    ({"format": 99}, "has format 99; this fcs reads format 1"),
    ({"format": 1, "task": "restore"}, "lacks field\\(s\\) model, chosen, candidates, rule, items"),
])
def test_a_bad_record_names_its_problem(tmp_path, content, message):
    path = tmp_path / "tuning.json"
    if content is not None:
        write(path, content)
    with pytest.raises(ValueError, match=message):
        JobConfig(input="in", output="out", model="tiny", tuning=str(path))


def test_a_record_for_another_task_or_model_is_refused_naming_both(fcs_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    other = write(tmp_path / "sr.json", made_for("tiny", task="superres"))
    with pytest.raises(ValueError, match="made for task 'superres', not 'restore'"):
        JobConfig(input="in", output="out", model="tiny", tuning=other)
    photo = write(tmp_path / "photo.json", made_for("photo"))
    with pytest.raises(ValueError, match=r"made for model 'photo' \(weights sha256:\w+\), not 'tiny' \(weights"):
        JobConfig(input="in", output="out", model="tiny", tuning=photo)
    with pytest.raises(ValueError, match="made for model 'photo'.*not 'tiny'"):  # the diffusers-style pipeline too
        FastConstrainedInpaintPipeline.from_pretrained("tiny", tuning=photo)
    hub = write(tmp_path / "hub.json", made_for("org/some-model", fingerprint=False))
    with pytest.raises(ValueError, match="made for model 'org/some-model', not 'tiny'"):
        JobConfig(input="in", output="out", model="tiny", tuning=hub)


def test_the_same_weights_under_another_name_are_the_same_model(fcs_cache, tmp_path):
    copy = tmp_path / "my-tiny"
    shutil.copytree(fcs_cache / "tiny", copy)
    weights = record.fingerprint(str(copy))
    assert weights == record.fingerprint(str(fcs_cache / "tiny"))
    renamed = made_for("photo") | {"model": {"id": "tiny-elsewhere", "fingerprint": weights}}
    cfg = JobConfig(input="in", output="out", model=str(copy), tuning=write(tmp_path / "t.json", renamed))
    assert cfg.sampler.steps == 7 and cfg.applied.source == "tuning"
    (copy / "unet" / "config.json").write_text((copy / "unet" / "config.json").read_text() + " ")
    assert record.fingerprint(str(copy)) != weights  # a changed file is another model
    with pytest.raises(ValueError, match="weights"):
        JobConfig(input="in", output="out", model=str(copy), tuning=cfg.tuning)


def test_which_settings_a_run_applies(fcs_cache, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("FCS_CACHE", str(fcs_cache))
    tuned = write(tmp_path / "t.json", made_for("tiny"))
    cfg = JobConfig(input="in", output="out", model="tiny", tuning=tuned)
    assert (cfg.sampler.steps, cfg.sampler.newton_steps, cfg.sampler.inner) == (7, 1, "cg")
    assert cfg.applied.to_dict() == {"source": "tuning", "preset": "cg", "record": tuned,
                                     "candidate": "cg:steps=7,newton_steps=1", "settings": {"steps": 7}}
    explicit = JobConfig(input="in", output="out", model="tiny", tuning=tuned, sampler={"steps": 3})
    assert (explicit.sampler.steps, explicit.sampler.newton_steps) == (3, 1)  # a flag wins over the record
    pipe = FastConstrainedInpaintPipeline.from_pretrained("tiny", tuning=tuned)  # the diffusers-style class too
    assert pipe.settings().steps == 7 and pipe.settings("fast") == with_preset(SamplerConfig(), "fast")
    assert pipe.settings(newton_steps=2).newton_steps == 2
    preset = JobConfig(input="in", output="out", model="tiny", tuning=tuned, preset="fast")
    assert preset.sampler == with_preset(SamplerConfig(), "fast") and preset.applied.source == "preset"
    # the model folder's own record, else the default with one log line naming fcs tune
    folder = tmp_path / "model"
    shutil.copytree(fcs_cache / "tiny", folder)
    caplog.set_level(logging.INFO, logger="fcs.tuning.apply")
    plain = JobConfig(input="in", output="out", model=str(folder))
    assert plain.applied.source == "default" and plain.sampler == with_preset(SamplerConfig(), DEFAULT_PRESET)
    assert f"fcs tune restore --model {folder}" in caplog.text and "unmeasured" in caplog.text
    (folder / record.MODEL_RECORDS).mkdir()
    write(folder / record.MODEL_RECORDS / "restore.json", made_for(str(folder)))
    own = JobConfig(input="in", output="out", model=str(folder))
    assert own.applied.source == "model" and own.sampler.steps == 7
    sr = JobConfig(input="in", output="out", model=str(folder), task="superres")  # a record per task
    assert sr.applied.source == "default"


def test_the_rule_takes_the_cheapest_within_the_tolerance():
    def entry(name, calls, psnr, detail=1.0, complete=True):
        return {"name": name, "calls": calls, "complete": complete, "psnr": {"mean": psnr},
                "detail": {"mean": detail}}

    entries = [entry("paper", 220, 20.0), entry("fast", 70, 19.95), entry("cg", 48, 19.6),
               entry("blur", 10, 25.0, detail=0.1), entry("broken", 5, 30.0, complete=False)]
    # fast is 0.05 dB off, cg 0.4; blur is over-smooth; broken unfinished
    assert choice.choose(entries)["name"] == "fast"
    assert choice.choose(entries, tolerance_db=0.5)["name"] == "cg"
    assert choice.choose(entries, tolerance_db=0.01)["name"] == "paper"
    assert choice.choose(entries, max_calls=60)["name"] == "cg"  # the best under the budget
    assert choice.choose([entry("blur", 10, 25.0, detail=0.1)])["name"] == "blur"  # none sharp: all count
    with pytest.raises(ValueError, match="no candidate costs at most 4 UNet calls.*cheapest, cg, costs 48"):
        choice.choose(entries[:3], max_calls=4)
    with pytest.raises(ValueError, match="none of the 1 candidate\\(s\\) finished"):
        choice.choose([entries[-1]])


def test_candidates_are_open_ended_specs():
    cand = parse_candidate("cg:steps=12,newton_steps=3,eta=0.5")
    assert cand.name == "cg:steps=12,newton_steps=3,eta=0.5"
    assert cand.config(SamplerConfig()) == SamplerConfig(steps=12, newton_steps=3, inner="cg", eta=0.5)
    for bad, message in (("turbo", "not a preset"), ("cg:steps", "is not field=value"),
                         ("cg:steps=0", "steps"), ("cg:colour=1", "unknown sampler config field")):
        with pytest.raises(ValueError, match=message):
            parse_candidate(bad)
    grid = default_candidates(SamplerConfig())
    names = [c.name for c in grid]
    assert {"paper", "fast", "cg", "cg:steps=8", "cg:newton_steps=3", "paper:inner=cg", "calibrated",
            "calibrated:steps=18"} <= set(names)  # every preset, each with its grid
    assert max(c.config(SamplerConfig()).nfe_per_item for c in grid) == 220  # none dearer than the paper's
    held = resolve(["cg", "cg:steps=8", "fast"], SamplerConfig(), held={"steps": 4})
    assert [c.name for c, _ in held] == ["cg", "fast"]  # a held flag makes cg:steps=8 the same as cg
    assert all(config.steps == 4 for _, config in held)


def test_sampler_for_without_a_record_uses_the_default_preset():
    config, applied = sampler_for(SamplerConfig(), task="restore", model="nowhere/model")
    assert config == with_preset(SamplerConfig(), DEFAULT_PRESET) and applied.source == "default"
