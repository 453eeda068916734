"""benchmarks/gpu.py cannot rot: the suite runs every family's code path at a tiny size on the CPU, as a
user would, and the no-GPU path that writes the plan with "not measured" rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
FAMILIES = ("sd15", "sdxl", "sd35-medium", "flux-dev")


def _run(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_gpu_benchmark_runs_every_family_at_tiny_size_and_writes_its_results(tmp_path):
    _run("--tiny", "--reps", "1", "--out", str(tmp_path))
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["measured"] and list(result["families"]) == list(FAMILIES)
    md = (tmp_path / "gpu.md").read_text()
    for name, family in result["families"].items():
        assert family["measured"] and family["gflop_per_forward"] > 0, name
        assert all(v > 0 for v in family["forwards_per_s"].values()), name
        step = family["inner_step"]
        assert all(step[k] > 0 for k in ("fd_s", "jvp_s", "jvp_math_s", "forward_sdpa_s", "forward_math_s")), name
        fast, cg = family["presets"]["fast"], family["presets"]["cg"]
        assert fast["nfe"] == 70 and cg["nfe"] == 48 and cg["seconds_per_image"] > 0, name
        assert not any("skipped" in s for s in family["stages"]), name
        assert f"#### {name}: " in md
    assert md.count("| cg | 48 | fd | 1 |") == len(FAMILIES) and "not measured" not in md


def test_without_a_gpu_it_writes_the_plan_with_not_measured_rows(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the script measures instead")
    done = _run("--out", str(tmp_path))
    assert "not measured" in done.stdout
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert not result["measured"] and list(result["families"]) == list(FAMILIES)
    flux = result["families"]["flux-dev"]
    assert flux["image_side"] == 1024 and 11.8e9 < flux["params"] < 12e9 and flux["gflop_per_jvp"] > flux[
        "gflop_per_forward"] > 5e4
    assert 5e3 < result["families"]["sdxl"]["gflop_per_forward"] < 8e3  # SDXL's UNet at 1024²: ≈ 6.8 TFLOP
    # one command within 8 minutes: the plan's stages (without torch.compile, which goes last) fit the budget
    assert sum(sum(f["planned_stages"].values()) for f in result["families"].values()) < result["budget_s"] <= 480
    md = (tmp_path / "gpu.md").read_text()
    for name in FAMILIES:
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert row.count("not measured") == 5, row
    # a measured result is never overwritten by the no-GPU path
    (tmp_path / "gpu.json").write_text(json.dumps({"measured": True}))
    _run("--out", str(tmp_path), "--families", "sd15")
    assert json.loads((tmp_path / "gpu.json").read_text()) == {"measured": True}
