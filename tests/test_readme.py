"""The README and every page under docs/: their Python examples run as written (with the built-in tiny
model), the README stays a short entry page whose test command is CI's, and each number of its
results summary is in the file the command next to it writes."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from docs_pages import PAGES, README, ROOT, blocks, cells, name, section, table_rows
from PIL import Image

EXAMPLES = [(page, index) for page in PAGES for index in range(len(blocks(page, "python")))]


def test_readme_and_docs_have_python_examples():
    assert blocks(README, "python"), "the README shows the library from Python"
    assert len(EXAMPLES) >= 4  # the README's, the library's, the oracle check's, pipeline.apply's


@pytest.mark.parametrize(("page", "index"), EXAMPLES, ids=[f"{name(p)}-{i}" for p, i in EXAMPLES])
def test_python_example_runs(page, index, tmp_path, fcs_cache):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((40, 56), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code = blocks(page, "python")[index]
    assert code.strip(), "an empty block (a fence opened twice?)"
    code = code.replace("num_inference_steps=20, newton_steps=5", "num_inference_steps=2, newton_steps=1")
    env = {**os.environ, "FCS_CACHE": str(fcs_cache), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_readme_is_an_entry_page():
    assert len(README.read_text().splitlines()) <= 250, "move reference material to a page under docs/"


def test_ci_runs_exactly_the_readme_test_command():
    commands = [line.split("#")[0].strip() for line in section(README, "## The two commands").splitlines()
                if line.startswith("make ")]
    assert commands == ["make demo", "make test"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export ", "if ", "echo", "fi"))]
    assert ci == ["make test"], ci


def test_readme_results_summary_numbers_are_in_the_files_their_commands_write():
    rows = table_rows(section(README, "## Results"))[1:]
    assert len(rows) >= 4
    for row in rows:
        _, numbers, source = cells(row)
        script = re.search(r"`python (benchmarks/\w+\.py)[^`]*`", source)
        written = re.search(r"\]\((benchmarks/results/\w+\.md)\)", source)
        assert script and (ROOT / script[1]).exists() and written, row
        text = (ROOT / written[1]).read_text()
        for number in re.findall(r"\d+(?:\.\d+)?", numbers):
            assert re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", text), f"{number} not in {written[1]}: {row}"
