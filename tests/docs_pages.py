"""The README and the pages under docs/, read the same way by every test that checks them: fenced
code blocks, the ``fcs`` command lines of the shell blocks, markdown tables, links and headings
(a module, not fixtures, so test parametrisation can use it at collection time)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]  # every page a user reads for how to run the project


def name(page: Path) -> str:
    """The page as the repository names it: README.md, docs/jobs.md."""
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path, language: str) -> list[str]:
    """The bodies of the page's fenced blocks in ``language`` (python, bash), in order."""
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


def section(page: Path, heading: str) -> str:
    """The text of the page under the heading (a whole line, e.g. ``## Input kinds``) up to the next
    heading of the same or a higher level (lines inside fenced code are never headings)."""
    level = len(heading.split(" ", 1)[0])
    lines = page.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        fenced ^= lines[end].startswith("```")
        hashes = len(lines[end]) - len(lines[end].lstrip("#"))
        if not fenced and 0 < hashes <= level and lines[end][hashes:hashes + 1] == " ":
            return "".join(lines[start:end])
    return "".join(lines[start:])


def fcs_commands(script: str) -> list[list[str]]:
    """Each ``fcs`` command line of a shell block as argv (continuation lines joined, comments dropped);
    also those run through ``ray job submit ... -- fcs ...``."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv[:1] == ["fcs"]:
            commands.append(argv)
        elif "--" in argv and argv[argv.index("--") + 1:][:1] == ["fcs"]:
            commands.append(argv[argv.index("--") + 1:])
    return commands


def table_rows(text: str) -> list[str]:
    """The markdown table lines of the text, separator lines (|---|) left out."""
    return [line.strip() for line in text.splitlines()
            if line.startswith("|") and not set(line.strip()) <= set("|-: ")]


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def links(page: Path) -> list[str]:
    """Targets of the page's markdown links and images, fenced code left out."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives the page: lower case, punctuation dropped, spaces to hyphens,
    a repeated one numbered."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)
