"""Imports point down only: pipeline never imports jobs; fcs never imports ray, pipeline or jobs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_pipeline_does_not_import_jobs():
    bad = {f: n & {"jobs"} for f, n in _imports("pipeline").items() if n & {"jobs"}}
    assert not bad, bad


def test_fcs_does_not_import_ray_or_upper_layers():
    banned = {"ray", "pipeline", "jobs", "s3fs"}
    bad = {f: n & banned for f, n in _imports("fcs").items() if n & banned}
    assert not bad, bad
