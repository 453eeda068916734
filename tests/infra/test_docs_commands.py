"""Every ``fcs`` command line in the README's and docs/'s shell blocks is accepted by the real CLI
(its argparse, as the console script parses it; nothing runs), so no example names a flag, a
choice or a task that does not exist."""

import contextlib
import io

import pytest
from docs_pages import PAGES, blocks, fcs_commands, name
from infra_helpers import parse_fcs

COMMANDS = [(page, argv) for page in PAGES for script in blocks(page, "bash") for argv in fcs_commands(script)]


def test_docs_show_commands():
    assert len(COMMANDS) >= 20 and {name(page) for page, _ in COMMANDS} >= {"README.md", "docs/jobs.md"}


@pytest.mark.parametrize(("page", "argv"), COMMANDS, ids=[f"{name(p)}: {' '.join(a)[:60]}" for p, a in COMMANDS])
def test_docs_command_parses(page, argv):
    if "--help" in argv:  # help exits 0 after printing
        from jobs.cli import main

        with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as exit_:
            main(argv[1:])
        assert exit_.value.code == 0 and "--input" in out.getvalue()
        return
    parse_fcs(argv)
