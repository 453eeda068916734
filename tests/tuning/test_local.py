"""The tuner in this process (fcs.tuning.local): every tunable task gives a valid record, whose numbers
are the scores of its own samples, and which a job then applies."""

from __future__ import annotations

import json

import pytest

from fcs.masks import make_mask
from fcs.photos import HELD_OUT, center_square, load_photo
from fcs.tuning import Source, record, scores
from fcs.tuning.local import sample_problems, tune
from fcs.tuning.problems import make_problems
from pipeline.tasks import TASKS


@pytest.mark.parametrize("task, options", [("restore", {}), ("outpaint", {"pad": 16}), ("superres", {"scale": 2})])
def test_every_tunable_task_gives_a_record(sd, task, options):
    spec = TASKS[task]
    items = [Source(p, center_square(load_photo(p), 64), make_mask("box", 64) / 255.0) for p in HELD_OUT[:2]]
    made = tune(sd, task, items, run=spec.run, base=spec.sampler, through_decoder=spec.through_decoder,
                options=spec.check_options(options), specs=["cg", "fast"], held={"steps": 2}, count=2,
                model="tiny", show_progress=False)
    assert record.parse(json.dumps(made), "in memory")["task"] == task
    assert [c["name"] for c in made["candidates"]] == ["cg", "fast"] and made["items"]["used"] == 2
    assert made["chosen"]["settings"]["steps"] == 2 and made["chosen"]["name"] in ("cg", "fast")
    # the record's numbers are the scores of the samples it drew (same problems and seeds again)
    problems = make_problems(task, items, spec.check_options(options), 2, 0, sd.min_side())
    configs = [record.settings({"chosen": c}) for c in made["candidates"]]
    again = sample_problems(sd, spec.run, problems.problems, configs, spec.check_options(options), show_progress=False)
    for k, entry in enumerate(made["candidates"]):
        for p in problems.problems:
            fresh = scores.score(p.truth, again[(k, p.id)]["image"], p.region)
            assert entry["per_problem"][p.id]["psnr"] == pytest.approx(fresh["psnr"], abs=1e-3)
