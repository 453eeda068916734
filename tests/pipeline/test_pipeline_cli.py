"""The README's main command (``fcs run restore --demo``), ``--smoke``, and the demo's model choice."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
from PIL import Image
from pipeline_testdata import read_rows
from venv_tools import venv_tool

from fcs.loading import model_folder
from fcs.tuning import record
from jobs import batch
from jobs.demo import build_demo_dataset, demo_model, make_mask


def test_demo_runs_from_a_fresh_folder(ray_address, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FCS_MODEL", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    caplog.set_level("INFO", logger="fcs.jobs")
    assert batch.main("restore", ["--demo"]) == 0  # the demo's own settings: the photo model's own record
    assert "demo: model photo at 128x128" in caplog.text
    table = read_rows(str(tmp_path / "demo-output" / "restored"))
    assert table.num_rows == 8 and set(table.column("status").to_pylist()) == {"ok"}
    assert len(list((tmp_path / "demo-output" / "preview").glob("*.png"))) == 8
    printed = capsys.readouterr().out
    assert "8 ok, 0 error" in printed and "previews" in printed
    own = record.read(record.model_folder_record(model_folder("photo"), "restore"))  # the demo runs its choice
    scores = re.search(rf"hole PSNR, mean of 8 item\(s\).*: newton \({re.escape(own['chosen']['name'])} from the "
                       rf"model's tuning record, {record.settings(own).nfe_per_item} UNet calls\) (\d+\.\d\d) dB "
                       r"\| replacement baseline (\d+\.\d\d) dB", printed)
    assert scores and float(scores[1]) > float(scores[2])  # Newton ahead of its baseline on held-out photos
    # a rerun resumes: nothing to do
    assert batch.main("restore", ["--demo"]) == 0
    assert "this run: 0 rows" in capsys.readouterr().out


def test_smoke_through_the_console_script(ray_address, tmp_path, capsys):
    """Run, then rerun into an output folder whose name holds glob characters: the rerun finds the
    committed row (the folder is a name, not a pattern) and does nothing."""
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    out = tmp_path / "run[1]*?" / "out"
    command = [venv_tool("fcs"), "run", "restore", "--smoke", "--output", str(out)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 ok, 0 error" in proc.stdout
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["ok"] == 1 and summary["config"]["sampler"]["steps"] == 2
    # the rerun in-process (same CLI code; a second process would only pay Python, torch and Ray start-up again)
    assert batch.main("restore", ["--smoke", "--output", str(out)]) == 0
    rerun = capsys.readouterr().out
    assert "this run: 0 rows" in rerun and "0 duplicates" in rerun
    assert read_rows(str(out)).num_rows == 1


def test_demo_dataset_is_real_photos_with_nonempty_masks(tmp_path):
    folder = build_demo_dataset(tmp_path, size=32)
    images = sorted((folder / "images").glob("*.png"))
    assert len(images) == 8 and len(list((folder / "masks").glob("*.png"))) == 8
    cat = np.asarray(Image.open(folder / "images" / "chelsea-box.png"))
    assert cat.shape == (32, 32, 3) and cat.std() > 20
    for kind in ("box", "strokes"):
        m = make_mask(kind, 64)
        assert 0.05 < (m > 0).mean() < 0.6


def test_demo_model_is_the_trained_photo_model_unless_fcs_model_is_set(monkeypatch):
    monkeypatch.delenv("FCS_MODEL", raising=False)
    assert demo_model() == "photo"
    monkeypatch.setenv("FCS_MODEL", "my/model")
    assert demo_model() == "my/model"


def test_asking_for_missing_gpus_fails_fast(ray_address, tmp_path, capsys):
    from pipeline_testdata import good_rows, write_shards

    write_shards(tmp_path / "in", good_rows(2))
    code = batch.main("restore", ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--actors", "3",
                         "--model", "tiny",
                         "--gpus-per-actor", "1"])  # the session cluster has 2 (fake) GPUs
    assert code == 2
    assert "need 3 GPU(s) but the Ray cluster has 2" in capsys.readouterr().err


def test_a_value_error_inside_a_ray_task_is_a_failed_job_not_bad_input(tmp_path, monkeypatch, capsys, caplog):
    """Ray re-raises a task's ValueError as a RayTaskError that is also a ValueError: the CLI must
    not call that 'bad input, nothing done' (exit 2) when rows may already be committed."""
    from pipeline_testdata import good_rows, write_shards
    from ray.exceptions import RayTaskError

    import pipeline

    def fail_in_a_task(cfg):
        raise RayTaskError("prepare", "traceback", ValueError("not contiguous")).as_instanceof_cause()

    write_shards(tmp_path / "in", good_rows(1))
    monkeypatch.setattr(pipeline, "run", fail_in_a_task)
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--model", "tiny"]
    assert batch.main("restore", args) == 1
    assert "a rerun resumes" in caplog.text and "error:" not in capsys.readouterr().err
