"""Layering (CONTRIBUTING.md): imports point down only. ``fcs`` never imports ray, object storage,
``pipeline`` or ``jobs``; ``pipeline`` never imports ``jobs``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_FCS = {"ray", "pipeline", "jobs", "s3fs", "fsspec", "pyarrow", "boto3", "botocore"}


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a source file imports, lazy (in-function) imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_fcs_sources_import_nothing_above_them():
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_modules(p) & FORBIDDEN_IN_FCS) for p in _sources("fcs")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"fcs/ must stay torch + diffusers only: {offenders}"
    assert len(_sources("fcs")) >= 10  # the scan saw the package


def test_pipeline_sources_never_import_jobs():
    offenders = [str(p.relative_to(ROOT)) for p in _sources("pipeline") if "jobs" in _imported_modules(p)]
    assert not offenders, f"pipeline/ must not import jobs/: {offenders}"


def test_the_scanner_sees_lazy_imports(tmp_path):
    """The check above can fail: an import inside a function is found."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    import ray.data\n    from jobs.cli import main\n"
                      "    importlib.import_module('s3fs')\n")
    assert _imported_modules(source) >= {"ray", "jobs", "s3fs"}


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_import_fcs_loads_no_ray_storage_pipeline_or_jobs():
    loaded = _modules_after("import fcs")
    assert "fcs" in loaded
    assert not loaded & FORBIDDEN_IN_FCS, sorted(loaded & FORBIDDEN_IN_FCS)


def test_inpainting_with_fcs_loads_no_ray_pipeline_or_jobs(fcs_cache):
    """A whole notebook-style session (load, inpaint) still never touches the upper layers."""
    code = (
        f"import os; os.environ['FCS_CACHE'] = {str(fcs_cache)!r}\n"
        "import numpy as np, fcs\n"
        "den = fcs.load_denoiser('tiny', device='cpu', dtype='float32')\n"
        "img = np.zeros((32, 32, 3), np.uint8); mask = np.zeros((32, 32)); mask[8:24, 8:24] = 1\n"
        "fcs.inpaint(den, fcs.Items([img], [mask]), fcs.SamplerConfig(steps=1, newton_steps=1))"
    )
    loaded = _modules_after(code)
    assert not loaded & {"ray", "pipeline", "jobs"}, sorted(loaded & {"ray", "pipeline", "jobs"})
