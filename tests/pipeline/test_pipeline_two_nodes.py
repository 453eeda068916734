"""Acceptance 4: two simulated nodes with one "GPU" each: two sampler actors, one per node, each
reporting its own worker, node and device. Runs in its own process with its own two-node cluster so
the session's cluster is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from pipeline_testdata import assert_exactly_once, good_rows, read_rows


def test_one_sampler_actor_per_gpu_node(tmp_path, fcs_cache):
    script = Path(__file__).with_name("two_nodes_job.py")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"FCS_CACHE": str(fcs_cache)}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["gpus_per_actor"] == 1.0 and summary["ok"] == 16 and summary["duplicates"] == 0

    table = read_rows(str(tmp_path / "out"))
    assert_exactly_once(table, [r["id"] for r in good_rows(16)])
    nodes_of = defaultdict(set)
    for row in table.to_pylist():
        nodes_of[row["worker"]].add(row["node"])
        assert row["device"] == "cpu"  # fake GPUs: Ray reserved one, torch has no CUDA here
    assert len(nodes_of) == 2, f"expected 2 sampler actors, saw {dict(nodes_of)}"
    assert all(len(nodes) == 1 for nodes in nodes_of.values())
    assert {n for nodes in nodes_of.values() for n in nodes} == set(summary["nodes"])  # one actor per node
