"""The import graph of ``fcs/``, ``pipeline/`` and ``jobs/``, read from the sources with ``ast``
(and, for the layers, also observed in a fresh interpreter).

Policy (CONTRIBUTING.md):

* **Layers** point down only: ``fcs`` never imports ray, object storage, ``pipeline`` or ``jobs``;
  ``pipeline`` never imports ``jobs``. Every import counts, lazy ones and
  ``importlib.import_module("name")`` included; ``import fcs`` and an inpainting session load none
  of them either.
* **No cycles** among project modules. Every import statement of a module is an edge, wherever it
  stands: at module level, inside a function (a lazy import that hides a cycle is still the cycle)
  and under ``if TYPE_CHECKING:``. ``from P import n`` is an edge to the module ``P.n`` when ``n`` is
  a submodule of package ``P``, else to ``P`` itself. Importing ``P.Q`` is an edge to ``P.Q`` only:
  Python runs ``P/__init__.py`` first, but a package re-exporting its own submodules is not a
  dependency of those submodules on the package. So ``pipeline/__init__.py`` may import
  ``pipeline.graph``, while ``from pipeline import run`` inside ``pipeline/`` closes a cycle.
* **No private names across modules**: another project module's module-level ``_name`` is neither
  imported (``from X import _name``) nor read as an attribute (``X._name``, ``X`` an imported
  project module). Dunder names (``__version__``) are public. What two modules share is public.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fcs", "pipeline", "jobs")
FORBIDDEN = {  # package -> top-level names its modules never import
    "fcs": {"ray", "pipeline", "jobs", "s3fs", "fsspec", "pyarrow", "boto3", "botocore"},
    "pipeline": {"jobs"},
}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> source file, for every module of the project's packages."""
    return {_module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str, str | None]]:
    """(line, imported module, name taken from it or None) for every import in the file, lazy ones,
    ``TYPE_CHECKING`` ones and ``importlib.import_module("literal")`` included; ``from P import sub``
    yields the submodule ``P.sub``."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((node.lineno, sub, None) if sub in modules else (node.lineno, source, alias.name))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            found.append((node.lineno, node.args[0].value, None))
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (see the module docstring)."""
    return {m: {target for _, target, _ in imports(m, p, modules) if target in modules and target != m}
            for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path that ends where it starts) per group of modules that reach one another,
    sorted, so the report is stable."""
    reach = {m: _reachable(graph, m) for m in graph}
    groups = {frozenset({m} | {n for n in reach[m] if m in reach[n]}) for m in graph if m in reach[m]}
    return sorted(_cycle_in(graph, set(group)) for group in groups)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others (``start`` itself when on a cycle)."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest cycle through the group's first module (breadth-first within the group)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def private_uses(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, ``module._name``) for each private name of another project module this file imports
    or reads as an attribute of a module it imported."""
    found = []
    bound: dict[str, str] = {}  # local name -> project module it refers to
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # ``import a.b`` binds ``a``; ``a.b._x`` is resolved through the dotted name
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    bound[alias.asname or alias.name] = sub
                elif source in modules and source != module and _private(alias.name):
                    found.append((node.lineno, f"{source}.{alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            target = ".".join(filter(None, [bound.get(head), rest])) if head in bound else None
            if target in modules and target != module:
                found.append((node.lineno, f"{target}.{node.attr}"))
    return sorted(set(found))


def layer_violations(modules: dict[str, Path], forbidden: dict[str, set[str]], root: Path = ROOT) -> list[str]:
    """``file:line package`` for each import of a package its layer must not import."""
    found = []
    for module, path in modules.items():
        banned = forbidden.get(module.split(".")[0], set())
        for line, target, _ in imports(module, path, modules):
            if target.split(".")[0] in banned:
                found.append(f"{path.relative_to(root)}:{line} {target}")
    return sorted(found)


# -- the checks ---------------------------------------------------------------------------------
def test_the_scan_sees_every_package():
    modules = project_modules()
    assert {"fcs", "fcs.samplers.newton", "pipeline", "pipeline.graph", "jobs.cli"} <= set(modules)
    assert len(modules) >= 50


def test_layers_point_down_only():
    violations = layer_violations(project_modules(), FORBIDDEN)
    assert not violations, "imports across layers (fcs: torch + diffusers only; pipeline never imports jobs):\n" + \
        "\n".join(violations)


def test_no_import_cycles():
    cycles = find_cycles(import_graph(project_modules()))
    assert not cycles, "import cycles (move what both need into a module of its own):\n" + \
        "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    modules = project_modules()
    offenders = [f"{path.relative_to(ROOT)}:{line} {name}"
                 for module, path in modules.items() for line, name in private_uses(module, path, modules)]
    assert not offenders, "private names used across modules (make them public in the module that owns them):\n" \
        + "\n".join(offenders)


def _modules_after(code: str) -> set[str]:
    """Top-level names of the modules loaded after running ``code`` in a fresh interpreter."""
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_import_fcs_loads_no_ray_storage_pipeline_or_jobs():
    loaded = _modules_after("import fcs")
    assert "fcs" in loaded
    assert not loaded & FORBIDDEN["fcs"], sorted(loaded & FORBIDDEN["fcs"])


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


# -- the checks can fail ------------------------------------------------------------------------
@pytest.fixture
def toy(tmp_path: Path) -> dict[str, Path]:
    """A tiny project: ``fcs/a.py`` and ``fcs/b.py`` in a lazy cycle, private names crossing both
    ways, and ``fcs/__init__.py`` re-exporting its submodules (not a cycle)."""
    files = {
        "fcs/__init__.py": "from fcs.a import run\nfrom fcs import b\n__all__ = ['run', 'b']\n",
        "fcs/a.py": "import fcs.b as bee\n\ndef run():\n    return bee._helper() + bee.__doc__\n",
        "fcs/b.py": "def _helper():\n    from fcs.a import _secret, run\n    import ray.data\n    return 1\n\n"
                    "def _later():\n    return importlib.import_module('s3fs')\n",
        "pipeline/__init__.py": "from . import c\n",
        "pipeline/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from jobs import cli\n",
        "jobs/__init__.py": "",
        "jobs/cli.py": "import pipeline.c\nfrom fcs import run\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return project_modules(tmp_path)


def test_a_lazy_cycle_is_found_and_a_package_reexport_is_not(toy):
    graph = import_graph(toy)
    assert graph["fcs"] == {"fcs.a", "fcs.b"} and graph["pipeline"] == {"pipeline.c"}
    assert find_cycles(graph) == [["fcs.a", "fcs.b", "fcs.a"], ["jobs.cli", "pipeline.c", "jobs.cli"]]


def test_private_names_are_found_through_imports_and_attributes(toy):
    assert private_uses("fcs.a", toy["fcs.a"], toy) == [(4, "fcs.b._helper")]  # not the dunder
    assert private_uses("fcs.b", toy["fcs.b"], toy) == [(2, "fcs.a._secret")]
    assert private_uses("jobs.cli", toy["jobs.cli"], toy) == []


def test_layer_violations_count_lazy_and_type_checking_imports(toy):
    assert layer_violations(toy, FORBIDDEN, toy["fcs"].parents[1]) == ["fcs/b.py:3 ray.data", "fcs/b.py:7 s3fs",
                                                                    "pipeline/c.py:3 jobs.cli"]
