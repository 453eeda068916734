"""``fcs run restore``: inpainting restoration of a dataset on Ray (config -> pipeline -> summary).

    fcs run restore --input s3://bucket/damaged/ --output s3://bucket/restored/ \\
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --actors 8 --batch-size 4
    fcs run restore --demo       # sample photos + generated masks, local Ray, ./demo-output
    fcs run restore --smoke      # one item end to end (tiny model unless --model)

Input rows: image + mask (white = regenerate). Output image: the restored image.
Exit codes: 0 done (error rows included), 1 the job failed or ids are missing or duplicated,
2 bad configuration or input (nothing was run).
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs import batch
from jobs.batch import CONFIGS, Job

JOB = Job("restore", doc=__doc__, demo=True,
          about="Restore the masked regions of a dataset's images on Ray (inexact-Newton sampler) and write one "
                "Parquet row per input id.")
__all__ = ["CONFIGS", "JOB", "build_config", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    return batch.parser(JOB)


def build_config(args: argparse.Namespace):
    return batch.build_config(JOB, args)


def main(argv: list[str] | None = None) -> int:
    return batch.main(JOB, argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
