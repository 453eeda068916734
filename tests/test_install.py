"""The suite runs on what the README's test command installed, nothing else."""

import shutil

from venv_tools import BIN


def test_console_scripts_resolve_inside_the_running_venv() -> None:
    """`make test` puts the venv's bin first on PATH, so subprocesses that call `fcs` or `weed` by
    name get the clone's own, never one installed elsewhere by hand."""
    for name in ("fcs", "weed"):
        assert shutil.which(name) == str(BIN / name), f"{name} resolves to {shutil.which(name)}, not inside {BIN}"
