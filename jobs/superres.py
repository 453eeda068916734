"""``fcs run superres``: super-resolution ×s of a dataset on Ray (config -> pipeline -> summary).

    fcs run superres --input s3://bucket/low-res/ --output s3://bucket/upscaled/ --scale 4 \\
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --actors 8 --batch-size 4
    fcs run superres --smoke     # one item end to end (tiny model unless --model)

Input rows: image (the low-resolution image; a mask column is ignored). Output image: scale × its
size, whose antialiased bicubic downsampling matches the input. Sampler defaults: the paper's
super-resolution setting K=10 Newton steps, lr=0.1 (flags or the config file override them).
Exit codes: 0 done (error rows included), 1 the job failed or ids are missing or duplicated,
2 bad configuration or input (nothing was run).
"""

from __future__ import annotations

import logging
import sys

from jobs import batch
from jobs.batch import Job, Option

JOB = Job(
    "superres", doc=__doc__,
    about="Upscale a dataset's images ×2, ×4 or ×8 on Ray (inexact-Newton sampler under a bicubic "
          "downsampling constraint) and write one Parquet row per input id.",
    options=(
        Option("scale", "upscaling factor: 2, 4 or 8 (default 4)", {"type": int}),
        Option("variant", "error vector through the VAE 'decoder' (backward pass, the paper's; default) or "
                          "'encoder' (VAE forward passes only)"),
    ),
)


def main(argv: list[str] | None = None) -> int:
    return batch.main(JOB, argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
