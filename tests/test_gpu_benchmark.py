"""benchmarks/gpu.py cannot rot: the suite runs it at a tiny size on the CPU, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_benchmark_runs_at_tiny_size_and_writes_its_results(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--reps", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["gflop_per_forward"] > 0 and all(v > 0 for v in result["forwards_per_s"].values())
    step = result["inner_step"]
    assert all(step[k] > 0 for k in ("fd_s", "jvp_s", "forward_sdpa_s", "forward_math_s"))
    paper, fast = result["presets"]["paper"], result["presets"]["fast"]
    assert paper["nfe"] == 220 and fast["nfe"] <= 70 and paper["seconds_per_image"] > 0
    assert "| paper | 220 |" in (tmp_path / "gpu.md").read_text()
