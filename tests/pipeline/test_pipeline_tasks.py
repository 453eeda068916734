"""Issue 5, acceptance 5: the superres, style and layers jobs run end to end on the local Ray cluster
through the restore job's graph and write one row per id (a bad item becomes an error row); task
options are validated by name before any Ray work; the per-task stages work without Ray."""

from __future__ import annotations

import inspect
import io
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from pipeline_testdata import FAST, assert_exactly_once, photo, png, read_rows, write_shards

import pipeline
from fcs import SamplerConfig
from fcs.tasks.layers import regions
from jobs import batch
from pipeline.actor import TaskActor
from pipeline.config import JobConfig
from pipeline.output import read_output
from pipeline.stages import prepare
from pipeline.storage import Storage
from pipeline.tasks import MAX_REGIONS, TASKS

FAST_FLAGS = ["--model", "tiny", "--steps", "2", "--newton-steps", "1", "--batch-size", "2"]


def _decode(struct: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(struct["bytes"])))


def _two_objects(h: int = 48, w: int = 48) -> np.ndarray:
    """uint8 mask (H, W): two separate white boxes (two objects)."""
    m = np.zeros((h, w), np.uint8)
    m[4:18, 6:20] = 255
    m[26:44, 24:44] = 255
    return m


def _run(task: str, tmp_path, rows: list[dict], *flags: str) -> tuple[pa.Table, dict]:
    write_shards(tmp_path / "in", rows, per_shard=3)
    out = tmp_path / "out"
    assert batch.main(task, ["--input", str(tmp_path / "in"), "--output", str(out), *FAST_FLAGS, *flags]) == 0
    table = read_rows(str(out))
    assert_exactly_once(table, [r["id"] for r in rows])
    return table, json.loads((out / "_summary.json").read_text())


def test_superres_job_upscales_every_item_once(ray_address, tmp_path):
    sizes = {"square": (32, 32), "wide": (24, 40), "odd": (20, 28)}
    rows = [{"id": k, "image": png(photo(h, w, seed=i))} for i, (k, (h, w)) in enumerate(sizes.items())]
    rows.append({"id": "corrupt", "image": b"not an image"})  # no mask column at all: superres needs none
    table, summary = _run("superres", tmp_path, rows, "--scale", "2", "--preset", "paper")
    got = {r["id"]: r for r in table.to_pylist()}
    for key, (h, w) in sizes.items():
        assert got[key]["status"] == "ok", got[key]["error"]
        assert _decode(got[key]["image"]).shape == (2 * h, 2 * w, 3)
        assert got[key]["task"] == "superres" and got[key]["nfe"] > 0
    assert got["corrupt"]["status"] == "error" and got["corrupt"]["error"].startswith("decode: cannot decode image")
    assert summary["config"]["task_options"] == {"scale": 2, "variant": "decoder"}
    assert summary["config"]["sampler"]["lr"] == 0.1  # the paper's super-resolution lr, K from the flag


def test_outpaint_job_extends_every_item_once(ray_address, tmp_path):
    rows = [{"id": "a", "image": png(photo(32, 32))}, {"id": "b", "image": png(photo(16, 48, seed=1))},
            {"id": "big", "image": png(photo(32, 2040, seed=2))}]  # 2040 + 2*8 > max_side 2048
    table, summary = _run("outpaint", tmp_path, rows, "--pad", "8")
    got = {r["id"]: r for r in table.to_pylist()}
    for key, (h, w) in {"a": (32, 32), "b": (16, 48)}.items():
        assert got[key]["status"] == "ok", got[key]["error"]
        out = _decode(got[key]["image"])
        assert out.shape == (h + 16, w + 16, 3) and got[key]["task"] == "outpaint"
        assert np.array_equal(out[8:-8, 8:-8], photo(h, w, seed=0 if key == "a" else 1))
    assert got["big"]["error"].startswith("validate: image is 2040x32, output 2056x48, larger than max_side=2048")
    assert summary["config"]["task_options"] == {"pad": 8}


def test_style_job_generates_one_image_per_reference(ray_address, tmp_path):
    rows = [{"id": "a", "image": png(photo(40, 40)), "prompt": "a red door"},
            {"id": "b", "image": png(photo(24, 56, seed=1)), "prompt": None},  # takes --prompt
            {"id": "corrupt", "image": b"\x89PNG garbage", "prompt": "x"}]
    table, summary = _run("style", tmp_path, rows, "--clip-model", "tiny-clip", "--size", "32", "48",
                          "--prompt", "a house")
    got = {r["id"]: r for r in table.to_pylist()}
    for key in ("a", "b"):
        assert got[key]["status"] == "ok", got[key]["error"]
        assert _decode(got[key]["image"]).shape == (32, 48, 3) and got[key]["task"] == "style"
    assert got["corrupt"]["error"].startswith("decode: cannot decode image")
    assert summary["config"]["sampler"]["guidance_scale"] == 3.0


def test_layers_job_writes_foreground_background_alpha(ray_address, tmp_path):
    one_box = np.pad(np.full((16, 16), 255, np.uint8), 16)
    rows = [{"id": "two", "image": png(photo(48, 48)), "mask": png(_two_objects())},
            {"id": "one", "image": png(photo(48, 48, seed=1)), "mask": png(one_box)},
            {"id": "empty", "image": png(photo(48, 48)), "mask": png(np.zeros((48, 48), np.uint8))}]
    cfg = JobConfig(model="tiny", input=str(tmp_path / "in"), output=str(tmp_path / "out"), task="layers", batch_size=2,
                    task_options={"rounds": 2, "samples": 2}, sampler=FAST)
    write_shards(tmp_path / "in", rows)
    summary = pipeline.run(cfg)  # the library entry point this time, not the CLI
    assert (summary["ok"], summary["error"], summary["pending"], summary["duplicates"]) == (2, 1, 0, 0)
    assert_exactly_once(read_rows(cfg.output), ["two", "one", "empty"])  # the contract's columns still read
    table = read_output(Storage.from_uri(cfg.output), columns=TASKS["layers"].schema.names,
                        schema=TASKS["layers"].schema)
    got = {r["id"]: r for r in table.to_pylist()}
    for key in ("two", "one"):
        row = got[key]
        assert row["status"] == "ok", row["error"]
        fg, bg, alpha = _decode(row["foreground"]), _decode(row["background"]), _decode(row["alpha"])
        assert (fg.shape, bg.shape, alpha.shape) == ((48, 48, 4), (48, 48, 3), (48, 48))
        assert np.array_equal(_decode(row["image"]), bg) and np.array_equal(fg[..., 3], alpha)
        a = alpha[..., None] / 255.0
        recomposed = a * fg[..., :3] / 255.0 + (1 - a) * bg / 255.0
        original = photo(48, 48, seed=0 if key == "two" else 1) / 255.0
        assert np.abs(recomposed - original).mean() < 0.02  # 8-bit F and α; exact up to rounding
        assert row["residual_final"] < 0.05 and row["batch_size"] == 1
    assert got["empty"]["status"] == "error" and got["empty"]["error"].startswith("validate: mask is empty")
    assert got["empty"]["foreground"] is None


def test_smoke_runs_one_item_end_to_end(ray_address, tmp_path, capsys):
    """--smoke builds its own one-photo dataset (the other jobs' smoke options are checked below)."""
    assert batch.main("layers", ["--smoke", "--output", str(tmp_path / "out")]) == 0
    assert "1 ok, 0 error" in capsys.readouterr().out


@pytest.mark.parametrize("task, options, field", [
    ("superres", {"scale": 3}, "task_options.scale"), ("superres", {"variant": "magic"}, "task_options.variant"),
    ("superres", {"rounds": 2}, "task_options.rounds"), ("restore", {"scale": 2}, "task_options.scale"),
    ("style", {"size": [30, 32]}, "task_options.size"), ("style", {"size": 4096}, "task_options.size"),
    ("style", {"clip_model": ""}, "task_options.clip_model"), ("layers", {"samples": 1}, "task_options.samples"),
    ("layers", {"rounds": 0}, "task_options.rounds"), ("upscale", {}, "task"),
])
def test_bad_task_options_name_their_field(task, options, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        JobConfig.from_dict({"model": "tiny", "input": "in", "output": "out", "task": task, "task_options": options})


def test_cli_task_errors_exit_2_before_any_work(tmp_path, capsys):
    assert batch.main("superres", ["--input", "a", "--output", "b", "--model", "tiny", "--scale", "3"]) == 2
    assert "'task_options.scale': got 3, expected one of 2, 4, 8" in capsys.readouterr().err
    path = tmp_path / "job.yaml"
    path.write_text("task: style\ninput: a\noutput: b\nmodel: tiny\n")
    assert batch.main("superres", ["--config", str(path)]) == 2
    assert "config field 'task'" in capsys.readouterr().err


def test_flags_file_and_smoke_set_task_options(tmp_path):
    def cfg(task: str, *argv: str) -> JobConfig:
        spec = TASKS[task]
        return batch.build_config(spec, batch.parser(spec).parse_args(["--input", "x", "--output", "y", *argv]))

    assert cfg("layers", "--smoke", "--rounds", "4").task_options == {"rounds": 4, "samples": 2}
    assert cfg("style", "--smoke").task_options == {"clip_model": "tiny-clip", "size": [64, 64]}
    path = tmp_path / "job.yaml"
    path.write_text("model: tiny\ntask_options:\n  scale: 8\nsampler:\n  steps: 3\n")
    got = cfg("superres", "--config", str(path), "--variant", "encoder", "--preset", "paper")
    assert (got.task, got.task_options, got.sampler.steps, got.sampler.newton_steps) == (
        "superres", {"scale": 8, "variant": "encoder"}, 3, 10)


def test_task_defaults_follow_the_library():
    from fcs import SamplerConfig
    from fcs.tasks.layers import extract_layers
    from fcs.tasks.style import STYLE_DEFAULTS
    from fcs.tasks.superres import SR_DEFAULTS

    def cfg(task: str, **sampler) -> SamplerConfig:
        return JobConfig(model="tiny", input="i", output="o", task=task, sampler=sampler, preset="paper").sampler

    assert cfg("superres") == SR_DEFAULTS and cfg("style") == STYLE_DEFAULTS and cfg("restore") == SamplerConfig()
    assert cfg("layers") == inspect.signature(extract_layers).parameters["config"].default
    assert cfg("superres", newton_steps=2).newton_steps == 2  # the user's values win
    cfg = JobConfig(model="tiny", input="i", output="o", task="style", task_options={"size": 64})
    assert cfg.task_options["size"] == [64, 64]
    assert all(name == task.name and callable(task.run) for name, task in TASKS.items())


def test_prepare_follows_the_task(tmp_path):
    def prep(rows, task, **options):
        table = prepare(pa.Table.from_pylist(rows), storage=Storage.from_uri(str(tmp_path)), max_side=128, task=task,
                        options=options)
        return {r["id"]: r for r in table.to_pylist()}

    out = prep([{"id": "a", "image": png(photo(32, 32)), "mask": None}, {"id": "big", "image": png(photo(40, 40))}],
               "superres", scale=4)
    assert out["a"]["error"] is None and out["a"]["mask"] is None
    assert out["big"]["error"].startswith("validate: image is 40x40, output 160x160, larger than max_side=128")
    specks = np.zeros((48, 48), np.uint8)
    specks[::4, ::4] = 255
    out = prep([{"id": "specks", "image": png(photo(48, 48)), "mask": png(specks)},
                {"id": "none", "image": png(photo(48, 48)), "mask": None}], "layers")
    assert out["specks"]["error"].startswith(f"validate: mask has 144 separate white parts, more than {MAX_REGIONS}")
    assert out["none"]["error"].startswith("read: mask is missing")
    parts = regions(_two_objects() / 255.0)
    assert [int(p.sum()) for p in parts] == [18 * 20, 14 * 14]  # largest first


def test_sampler_actor_runs_superres_without_ray(model_dirs, device, tmp_path):
    sampler = TaskActor(str(model_dirs["tiny"]), "superres", SamplerConfig(**FAST), {"scale": 2, "variant": "decoder"},
                        device=device, dtype="float32")
    table = prepare(pa.Table.from_pylist([{"id": "a", "image": png(photo(24, 40))}, {"id": "bad", "image": b"x"}]),
                    storage=Storage.from_uri(str(tmp_path)), task="superres", options=sampler.options)
    out = sampler({name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names})
    assert (out["height"][0], out["width"][0]) == (48, 80) and len(out["out"][0]) == 48 * 80 * 3
    assert out["error"][1].startswith("decode:") and out["out"][1] is None


def test_style_size_off_the_model_grid_fails_the_actor_not_every_row(model_dirs, device):
    """The tiny model's grid is 16 px: a 24-px size is caught when the actor starts, naming the field."""
    with pytest.raises(ValueError, match=r"task_options\.size.*multiple of 16"):
        TaskActor(str(model_dirs["tiny"]), "style", SamplerConfig(**FAST),
                  {"size": [24, 24], "clip_model": "tiny-clip"}, device=device, dtype="float32")
