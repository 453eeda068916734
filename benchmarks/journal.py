"""The benchmarks' journals: one JSON object per line, appended as each result is measured, so a rerun
skips what is there."""

from __future__ import annotations

import json
from pathlib import Path


def read(path: Path) -> list[dict]:
    """Every entry of the journal at ``path`` (none when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
