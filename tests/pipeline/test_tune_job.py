"""``fcs tune`` as a job on real Ray: an interrupted tuning resuming, problems from real photos (the truth
absent from the sampler's input), bad items counted and skipped, the record and report written,
``fcs run --tuning`` applying it, and the refusals."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from pipeline_testdata import committed, read_rows, wait_for

from fcs.tuning.problems import HIDDEN
from jobs import batch, tune
from jobs.demo import build_demo_dataset
from jobs.report import build_report

FLAGS = ["--model", "tiny", "--steps", "4", "--batch-size", "2"]


def _decode(png: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


def test_tune_interrupted_resumed_then_run_with_the_record(ray_address, tmp_path, capsys):
    data = build_demo_dataset(tmp_path / "in", size=64, limit=5)  # real photos, the demo's masks
    (data / "images" / "broken.png").write_bytes(b"not an image")
    (data / "masks" / "broken.png").write_bytes(next((data / "masks").iterdir()).read_bytes())
    tuned = tmp_path / "tuned"
    args = ["restore", "--input", str(data), "--output", str(tuned), "--candidates", "cg", "fast", "--items", "4",
            *FLAGS]
    # a tuning killed midway (one problem per batch: a commit every 4 samples) ...
    cmd = [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())", "tune", *args,
           "--batch-size", "1"]
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(cmd, env={**os.environ, "RAY_ADDRESS": ray_address}, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: len(committed(tuned / "samples")) >= 1 or driver.poll() is not None, 240), \
                "no commit"
            driver.send_signal(signal.SIGKILL)
        finally:
            driver.kill()
            driver.wait()
    first = read_rows(str(tuned / "samples"), columns=["id"]).column("id").to_pylist()
    assert 0 < len(first) < 8 and not (tuned / "tuning.json").exists(), "not killed midway"
    # ... resumes: the rerun samples only what is missing
    assert tune.main(args) == 0
    rows = read_rows(str(tuned / "samples"), columns=["id"]).column("id").to_pylist()
    assert sorted(rows) == sorted(set(rows)) and len(rows) == 8 and set(first) <= set(rows)
    assert json.loads((tuned / "samples" / "_summary.json").read_text())["this_run"]["rows"] == 8 - len(first)
    printed = capsys.readouterr().out
    made = json.loads((tuned / "tuning.json").read_text())
    assert made["format"] == 1 and made["task"] == "restore" and made["model"]["id"] == "tiny"
    assert made["model"]["fingerprint"].startswith("sha256:") and made["hardware"]["device"] == "cpu"
    assert [c["name"] for c in made["candidates"]] == ["cg", "fast"] and made["held"] == {"steps": 4}
    assert made["chosen"]["name"] in ("cg", "fast") and f"* {made['chosen']['name']}" in printed
    assert made["items"]["used"] == 4 and len(set(made["items"]["ids"])) == 4
    assert sum(n for why, n in made["items"]["skipped"].items() if "decode" in why) == 1  # the broken image
    for c in made["candidates"]:
        assert c["complete"] and c["ok"] == 4 and c["calls"] == c["nfe_per_item"] == c["settings"]["steps"] * (
            1 + c["settings"]["newton_steps"] * (1 if c["settings"]["inner"] == "cg" else 2))
        assert c["psnr"]["low"] <= c["psnr"]["mean"] <= c["psnr"]["high"] and 0 < c["detail"]["mean"]
    # the sampler's whole input: every scored pixel overwritten, the truth kept apart
    problems = pq.read_table(tuned / "problems").to_pylist()
    truth = {r["id"]: r for r in pq.read_table(tuned / "truth").to_pylist()}
    assert len(problems) == 2 * 4 and {r["id"].split("/", 1)[1] for r in problems} == set(truth)
    for row in problems:
        region = _decode(truth[row["id"].split("/", 1)[1]]["region"], "L") > 127
        assert region.any() and (_decode(row["image"])[region] == HIDDEN).all()
        assert (_decode(row["mask"], "L")[region] == 255).all()
    page = (tuned / "report.html").read_text()
    assert page.count("<img") >= 1 + 4 * 3 and made["chosen"]["name"] in page  # plot, inputs, truth, strips

    # fcs run applies the record, and says so
    out = tmp_path / "out"
    assert batch.main("restore", ["--input", str(data), "--output", str(out), "--model", "tiny", "--limit", "2",
                                  "--tuning", str(tuned / "tuning.json")]) == 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["tuning"]["source"] == "tuning" and summary["tuning"]["record"] == str(tuned / "tuning.json")
    assert summary["tuning"]["candidate"] == made["chosen"]["name"]
    assert summary["config"]["sampler"] == made["chosen"]["settings"]
    page, _, _ = build_report(str(out))  # fcs report names the record too
    assert 'id="tuning-record"' in page and made["chosen"]["name"] in page

    # refusals, each in one line before any work: another settings' run in this output, a task without truth
    assert tune.main(["restore", "--input", str(data), "--output", str(tuned), "--candidates", "paper", *FLAGS]) == 2
    assert "holds a tuning run with other settings (items, candidates differ)" in capsys.readouterr().err
    assert tune.main(["style", "--input", str(data), "--output", str(tmp_path / "s"), *FLAGS]) == 2
    assert "cannot tune: a style job has no ground truth" in capsys.readouterr().err
    assert batch.main("superres", ["--input", str(data), "--output", str(tmp_path / "sr"), "--model", "tiny",
                                   "--tuning", str(tuned / "tuning.json")]) == 2
    assert "was made for task 'restore', not 'superres'" in capsys.readouterr().err

    # another rule on the same output re-chooses from the samples it has: nothing is sampled again
    assert tune.main([*args, "--tolerance-db", "100"]) == 0
    again = json.loads((tuned / "tuning.json").read_text())
    assert json.loads((tuned / "samples" / "_summary.json").read_text())["this_run"]["rows"] == 0
    assert again["rule"]["tolerance_db"] == 100 and again["candidates"] == made["candidates"]
    assert again["chosen"]["name"] == min(made["candidates"], key=lambda c: (c["calls"], -c["psnr"]["mean"]))["name"]


def test_too_few_usable_items_name_the_counts(ray_address, tmp_path, capsys):
    data = build_demo_dataset(tmp_path / "in", size=64, limit=3)
    for mask in (data / "masks").iterdir():  # white everywhere: nothing known to hide
        Image.fromarray(np.full((64, 64), 255, np.uint8)).save(mask)
    assert tune.main(["restore", "--input", str(data), "--output", str(tmp_path / "t"), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "only 0 of the 3 input item(s) sampled could make a problem (3 mask covers more than 60%" in err
    assert "tuning needs at least 4" in err
