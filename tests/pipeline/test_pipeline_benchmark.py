"""Acceptance 5 (the mechanics): benchmarks/pipeline_overhead.py measures overhead and items/s per
actor count and writes JSON + Markdown; benchmarks/scale.py runs a job with its model-free stand-in
sampler (``pipeline.run(cfg, actor_cls=...)``). The full runs are the scripts themselves."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image
from pipeline_testdata import read_rows

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_measures_and_writes_results(ray_address, tmp_path):
    bench = _script("pipeline_overhead")
    results = bench.measure(tmp_path / "work", items=8, size=32, batch_size=4, steps=2, newton_steps=1, actors=[1])
    (r,) = results
    assert r["ok"] == 8 and r["actors"] == 1
    assert 0.5 < r["overhead_steady"] <= r["overhead_job"]
    assert r["items_per_s_steady"] >= r["items_per_s_job"] > 0
    bench.write_results(results, tmp_path / "res" / "pipeline_overhead.json", "test")
    assert "| 1 | 8 |" in (tmp_path / "res" / "pipeline_overhead.md").read_text()
    assert (tmp_path / "res" / "pipeline_overhead.json").exists()


def test_scale_job_samples_with_its_stand_in_actor(ray_address, tmp_path):
    """The stand-in reaches the actors through ``actor_cls``: every row is its work (no model ran:
    worker "stand-in", no UNet calls, the output pixels are the input's)."""
    scale = _script("scale")
    r = scale.standin_job(tmp_path, n=8, batch_size=4, rows_per_file=4)
    assert r["ok"] == 8 and r["duplicates"] == 0 and r["files"] >= 1
    rows = read_rows(str(tmp_path / "out"), ["worker", "nfe", "image"]).to_pylist()
    assert len(rows) == 8
    assert {row["worker"] for row in rows} == {"stand-in"} and {row["nfe"] for row in rows} == {0}
    expected = np.asarray(Image.open(io.BytesIO(scale.tiny_png())))
    for row in rows:
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))), expected)
