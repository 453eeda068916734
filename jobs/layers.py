"""``fcs run layers``: layer extraction of a dataset on Ray (config -> pipeline -> summary).

    fcs run layers --input s3://bucket/photos/ --output s3://bucket/layers/ --rounds 3 --samples 4 \\
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --actors 8
    fcs run layers --smoke       # one item end to end (tiny model unless --model)

Input rows: image + mask, white = the rough region of an object (a box or a coarse mask); each
connected white part is one object. Output: background B (RGB) in image and background,
foreground F (RGBA) and alpha α (8-bit greyscale) with image ≈ α⊙F + (1−α)⊙B; see docs/layers.md.
Exit codes: 0 done (error rows included), 1 the job failed or ids are missing or duplicated,
2 bad configuration or input (nothing was run).
"""

from __future__ import annotations

import logging
import sys

from jobs import batch
from jobs.batch import Job, Option

JOB = Job(
    "layers", doc=__doc__, smoke={"rounds": 2, "samples": 2},
    about="Split a dataset's images into background, foreground and alpha given rough object regions, on Ray "
          "(EM over constrained-sampler completions), and write one Parquet row per input id.",
    options=(
        Option("rounds", "EM rounds: sample completions, re-estimate alpha (default 3)", {"type": int}),
        Option("samples", "completions per layer per round, at least 2 (default 4)", {"type": int}),
    ),
)


def main(argv: list[str] | None = None) -> int:
    return batch.main(JOB, argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
