"""``fcs run style``: style-guided generation on Ray, one image per row (config -> pipeline -> summary).

    fcs run style --input s3://bucket/styles/ --output s3://bucket/styled/ --size 512 512 \\
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --clip-model openai/clip-vit-base-patch32
    fcs run style --smoke        # one item end to end (tiny model and tiny CLIP unless given)

Input rows: image = the style reference, prompt = what to draw (rows without one use --prompt).
Output image: size [H, W], generated under a Gram-matrix loss on early CLIP vision features of the
reference, with classifier-free guidance 3 unless the sampler config says otherwise.
Exit codes: 0 done (error rows included), 1 the job failed or ids are missing or duplicated,
2 bad configuration or input (nothing was run).
"""

from __future__ import annotations

import logging
import sys

from jobs import batch
from jobs.batch import Job, Option

JOB = Job(
    "style", doc=__doc__, smoke={"clip_model": "tiny-clip", "size": [64, 64]},
    about="Generate one image per row from its prompt in the style of its reference image on Ray "
          "(inexact-Newton sampler under a CLIP Gram-matrix loss) and write one Parquet row per input id.",
    options=(
        Option("clip_model", "CLIP vision model: hub id, local folder, or 'tiny-clip' (built-in random weights); "
                             "default openai/clip-vit-base-patch32"),
        Option("size", "output size: H W, or one number for a square; multiples of the model's grid "
                       "(64 for SD 1.5); default 512 512", {"type": int, "nargs": "+", "metavar": "N"}),
    ),
)


def main(argv: list[str] | None = None) -> int:
    return batch.main(JOB, argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
