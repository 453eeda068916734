"""Job configuration: validated before any Ray or model work, errors name the field; CLI merging."""

from __future__ import annotations

import pytest

from jobs import batch
from jobs.batch import load_yaml
from pipeline.config import JobConfig
from pipeline.resources import plan_resources
from pipeline.tasks import TASKS


def _cfg(**kw) -> JobConfig:
    return JobConfig.from_dict({"model": "tiny", "input": "in", "output": "out", **kw})


@pytest.mark.parametrize("changes, field", [
    ({"actors": 0}, "actors"), ({"batch_size": "4"}, "batch_size"), ({"gpus_per_actor": -1}, "gpus_per_actor"),
    ({"output": "in"}, "output"), ({"limit": 0}, "limit"), ({"sampler": {"steps": 0}}, "steps"),
    ({"sampler": {"h": 2}}, "h"), ({"model": ""}, "model"), ({"max_side": True}, "max_side"),
    ({"dtype": "half"}, "dtype"), ({"dtype": ["fp16"]}, "dtype"), ({"device": "gpu"}, "device"),
    ({"device": "cuda:x"}, "device"), ({"device": "cuda", "gpus_per_actor": 0}, "device"),
])
def test_bad_values_name_their_field(changes, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        _cfg(**changes)


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="unknown job config field.*batchsize"):
        _cfg(batchsize=4)
    with pytest.raises(ValueError, match="unknown sampler config field.*stepz"):
        _cfg(sampler={"stepz": 3})


def test_round_trip():
    cfg = _cfg(actors=3, sampler={"steps": 7})
    assert JobConfig.from_dict(cfg.to_dict()) == cfg


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("input: s3://b/in\noutput: s3://b/out\nmodel: tiny\nactors: 4\n"
                    "sampler:\n  steps: 9\n  newton_steps: 3\n")
    args = batch.parser(TASKS["restore"]).parse_args(["--config", str(path), "--actors", "2", "--steps", "5"])
    cfg = batch.build_config(TASKS["restore"], args)
    assert (cfg.input, cfg.actors, cfg.sampler.steps, cfg.sampler.newton_steps) == ("s3://b/in", 2, 5, 3)


def test_shipped_config_files_are_valid():
    for path in sorted(batch.CONFIGS.glob("*.yaml")):
        values = load_yaml(path)
        JobConfig.from_dict({"model": "tiny", "input": "x", "output": "y",
                             **{k: v for k, v in values.items() if k not in ("input", "output")}})


def test_cli_rejects_bad_config_before_any_work(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("input: a\noutput: b\nmodel: tiny\nsampler:\n  jacobian: magic\n")
    assert batch.main("restore", ["--config", str(path)]) == 2
    assert "'jacobian'" in capsys.readouterr().err
    assert batch.main("restore", ["--input", "a"]) == 2
    assert "'output'" in capsys.readouterr().err
    assert batch.main("restore", ["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o"),
                                   "--model", "tiny"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_smoke_defaults():
    args = batch.parser(TASKS["restore"]).parse_args(["--smoke", "--input", "x", "--output", "y"])
    cfg = batch.build_config(TASKS["restore"], args)
    assert (cfg.limit, cfg.model, cfg.sampler.steps, cfg.sampler.newton_steps) == (1, "tiny", 2, 1)


@pytest.mark.parametrize("cluster, kw, expect", [
    ({"CPU": 4}, {}, (0.0, "cpu")),
    ({"CPU": 4, "GPU": 2}, {"actors": 2}, (1.0, "auto")),
    ({"CPU": 4, "GPU": 1}, {"actors": 2, "gpus_per_actor": 0.5}, (0.5, "auto")),
    ({"CPU": 4, "GPU": 2}, {"gpus_per_actor": 0}, (0.0, "cpu")),
])
def test_plan_resources(cluster, kw, expect):
    res = plan_resources(_cfg(**kw), cluster)
    assert (res.gpus, res.device) == expect and res.cpus == 0


@pytest.mark.parametrize("cluster, kw", [({"CPU": 4}, {"gpus_per_actor": 1}), ({"GPU": 1}, {"actors": 2})])
def test_missing_gpus_fail_fast(cluster, kw):
    with pytest.raises(ValueError, match="need .* GPU"):
        plan_resources(_cfg(**kw), cluster)


@pytest.mark.parametrize("inp, out", [("s3://b/data", "s3://b/data/out"), ("/tmp/x/out", "/tmp/x"), ("a/", "a"),
                                      ("in", "{cwd}/in/out"), ("./in", "in/out"), ("file://{cwd}/in", "in/out"),
                                      ("s3a://b/data", "s3://b/data/out")])
def test_output_inside_or_around_the_input_is_rejected(inp, out, tmp_path, monkeypatch):
    """A rerun would read its own part-*.parquet files as input shards, however the paths are spelled."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="'output'"):
        JobConfig(model="tiny", input=inp.format(cwd=tmp_path), output=out.format(cwd=tmp_path))
