"""The README and the pages under docs/ hold together: every results table is the one its command
wrote, every link lands, every batch example names its model, and no tracker numbers leak in.
(That every ``fcs`` command line parses: tests/infra/test_docs_commands.py; that the input-kind
commands run: tests/pipeline/test_pipeline_readme_inputs.py; the Python examples: test_readme.py.)"""

import re

import pytest
import yaml
from docs_pages import DOCS, PAGES, ROOT, anchors, blocks, fcs_commands, links, name, table_rows

RESULTS = DOCS / "results.md"
PROSE = [*PAGES, ROOT / "CONTRIBUTING.md"]


def _sections(text: str) -> list[str]:
    return re.split(r"\n(?=## )", text)[1:]


@pytest.mark.parametrize("text", _sections(RESULTS.read_text()), ids=lambda s: s.splitlines()[0][3:40])
def test_results_tables_are_copied_from_the_files_their_commands_write(text):
    """Each section names the command (``python benchmarks/X.py``) and the file it writes
    (``benchmarks/results/Y.md``), and every line of its tables is a line of that file."""
    rows = table_rows(text)
    if not rows:
        return
    script = re.search(r"`python (benchmarks/\w+\.py)", text)
    written = re.search(r"benchmarks/results/(\w+)\.(?:md\b|\{md)", text)
    assert script and (ROOT / script[1]).exists(), "name the command that prints the table"
    assert written, "name the file the command writes"
    source = (ROOT / "benchmarks" / "results" / f"{written[1]}.md").read_text()
    missing = [row for row in rows if row not in source]
    assert not missing, f"not in benchmarks/results/{written[1]}.md (rerun the command, copy its table): {missing}"


def test_results_page_holds_every_benchmark_table_the_readme_summarises():
    assert len(_sections(RESULTS.read_text())) >= 10
    assert all(len(table_rows(s)) > 1 for s in _sections(RESULTS.read_text()))


@pytest.mark.parametrize("page", PROSE, ids=name)
def test_links_land(page):
    for target in links(page):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{name(page)}: link to {target}: no such file"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{name(page)}: link to {target}: no such heading in {file.name}"


@pytest.mark.parametrize("page", PROSE, ids=name)
def test_code_fences_pair_up(page):
    """Fences open and close in pairs around something: a stray one would hide a block from the checks."""
    lines = page.read_text().splitlines()
    fences = [i for i, line in enumerate(lines) if line.startswith("```")]
    assert len(fences) % 2 == 0, f"{name(page)}: an unclosed fence"
    for start, end in zip(fences[::2], fences[1::2], strict=True):
        assert lines[end] == "```" and any(line.strip() for line in lines[start + 1:end]), \
            f"{name(page)}: the block at line {start + 1} is empty or opens inside another"


@pytest.mark.parametrize("page", PROSE, ids=name)
def test_no_tracker_issue_numbers(page):
    found = re.findall(r"(?i)\b(?:issue|pr|pull request)s? #?\d+|(?<![\w&/])#\d+\b", page.read_text())
    assert not found, f"{name(page)} cites the tracker ({found}): say what changed instead"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_batch_example_names_its_model(page):
    """Batch jobs have no default model: an ``fcs run`` example names one with --model, in its job
    file, or is a --smoke / --demo run (which choose theirs) or a --help."""
    for script in blocks(page, "bash"):
        for argv in fcs_commands(script):
            if argv[:2] != ["fcs", "run"] or {"--smoke", "--demo", "--help"} & set(argv):
                continue
            if "--config" in argv:
                job = yaml.safe_load((ROOT / argv[argv.index("--config") + 1]).read_text())
                if job.get("model"):
                    continue
            assert "--model" in argv, f"{name(page)}: `{' '.join(argv)}` names no --model"
