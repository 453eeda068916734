"""Helpers for tests/infra: repository paths, YAML loading, and parsing an ``fcs`` command line with
the real CLI's argparse (imported by the tests and by conftest.py)."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from unittest import mock

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


def load_yaml(relative: str) -> dict:
    return yaml.safe_load((REPO / relative).read_text())


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse_fcs(argv: list[str]) -> argparse.Namespace:
    """Parse ``fcs ARGV...`` exactly as the console script would (``jobs.cli.main`` and the parser
    of the command it dispatches to), stopping right after a complete parse: nothing is run.
    Fails the test with argparse's own message when a flag or value is rejected."""
    from jobs.cli import main

    assert argv and argv[0] == "fcs", f"not an fcs command line: {argv}"
    original = argparse.ArgumentParser.parse_known_args

    def spy(self, args=None, namespace=None):
        namespace, extras = original(self, args, namespace)
        if not extras:  # a complete parse: the command would run now
            raise _Parsed(namespace)
        return namespace, extras

    stderr = io.StringIO()
    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", spy), contextlib.redirect_stderr(stderr):
        try:
            main(argv[1:])
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit as exc:
            pytest.fail(f"`{' '.join(argv)}` is rejected by the fcs CLI (exit {exc.code}): {stderr.getvalue().strip()}")
    pytest.fail(f"`{' '.join(argv)}` was not parsed by any fcs command parser")
