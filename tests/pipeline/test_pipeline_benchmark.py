"""Acceptance 5 (the mechanics): benchmarks/pipeline_overhead.py measures overhead and items/s per
actor count and writes JSON + Markdown. The full >= 200-item run is the script itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pipeline_overhead.py"


def test_benchmark_measures_and_writes_results(ray_address, tmp_path):
    spec = importlib.util.spec_from_file_location("pipeline_overhead", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.measure(tmp_path / "work", items=8, size=32, batch_size=4, steps=2, newton_steps=1, actors=[1])
    (r,) = results
    assert r["ok"] == 8 and r["actors"] == 1
    assert 0.5 < r["overhead_steady"] <= r["overhead_job"]
    assert r["items_per_s_steady"] >= r["items_per_s_job"] > 0
    bench.write_results(results, tmp_path / "res" / "pipeline_overhead.json", "test")
    assert "| 1 | 8 |" in (tmp_path / "res" / "pipeline_overhead.md").read_text()
    assert (tmp_path / "res" / "pipeline_overhead.json").exists()
