"""A trained model's own tuning records, measured on its *training* images (never the held-out ones).

    python benchmarks/recommend.py --model photo      # writes fcs/models/photo/tuning/{restore,superres}.json
    python benchmarks/recommend.py --model digits     # writes benchmarks/reference_model/tuning/...
    python benchmarks/recommend.py --model digits --tasks restore
    python benchmarks/recommend.py --model photo --rechoose   # the rule of today on the numbers recorded

A thin caller of the tuner (:func:`fcs.tuning.local.tune`, what ``fcs tune`` runs without Ray): the
default candidates on problems made from training images (photo: centre crops of 8 training photos;
digits: 64 training digits), with no masks, so restore hides the tuner's box and stroke holes;
superres downscales by 2. Each record goes to ``<model folder>/tuning/<task>.json``, which a job on
that model applies when it names neither a preset nor a record (:mod:`fcs.tuning.apply`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

FOLDERS = {"photo": ROOT / "fcs" / "models" / "photo", "digits": HERE / "reference_model"}
NAMES = {"photo": "photo", "digits": "benchmarks/reference_model"}  # as a user names the model (from the repo root)
IMAGES = {"photo": 8, "digits": 64}
OPTIONS = {"restore": {}, "superres": {"scale": 2}}


def training_sources(model: str, n: int | None = None) -> list:
    """The model's training images as tuner sources (uint8 RGB, no masks)."""
    from fcs.tuning import Source

    n = n or IMAGES[model]
    if model == "digits":
        from digits import load_digits_16, split_indices

        images, _ = load_digits_16()
        idx = split_indices()[0][:n]
        return [Source(f"digit-{i}", gray_rgb(images[i])) for i in idx]
    from fcs.photos import TRAIN, center_square, load_photo

    return [Source(p, center_square(load_photo(p), 128)) for p in TRAIN[:n]]


def gray_rgb(image: torch.Tensor) -> np.ndarray:
    """(1, H, W) in [0, 1] -> uint8 (H, W, 3), the gray level in every channel."""
    gray = (image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.repeat(gray[..., None], 3, axis=2)


def load_model(model: str):
    from fcs import load_denoiser

    return load_denoiser(ROOT / NAMES[model] if model == "digits" else model, device="cpu")


def tune_task(den, model: str, task: str, sources: list, show_progress: bool = True) -> dict:
    """The tuning record of ``task`` on ``sources`` with the default candidates (``model``: photo, digits or
    a built-in name such as an oracle's)."""
    from fcs.tuning.local import tune
    from pipeline.tasks import TASKS

    spec = TASKS[task]
    options = spec.check_options(OPTIONS[task])
    return tune(den, task, sources, run=spec.run, base=spec.sampler, through_decoder=spec.through_decoder,
                options=options, specs=None, count=len(sources), model=NAMES.get(model, model),
                input=f"{len(sources)} training images of {model}",
                show_progress=show_progress)


def record_path(model: str, task: str) -> Path:
    from fcs.tuning.record import MODEL_RECORDS

    return FOLDERS[model] / MODEL_RECORDS / f"{task}.json"


def main() -> None:
    from fcs.tuning.record import fingerprint
    from jobs.tune import format_record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(FOLDERS), required=True)
    parser.add_argument("--tasks", nargs="+", choices=tuple(OPTIONS), default=list(OPTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rechoose", action="store_true",
                        help="samples nothing: apply the current rule to the candidates' numbers in each record")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rechoose:
        from fcs.tuning.evaluate import rechoose

        for task in args.tasks:
            path = record_path(args.model, task)
            if path.exists():
                record = rechoose(json.loads(path.read_text()))
                path.write_text(json.dumps(record, indent=1) + "\n")
                print(f"{args.model} {task}: chose {record['chosen']['name']} -> {path.relative_to(ROOT)}")
        return
    if fingerprint(NAMES[args.model]) is None:
        sys.exit(f"recommend: model {NAMES[args.model]!r} has no local files to fingerprint; run from the repo root")
    den, sources = load_model(args.model), training_sources(args.model)
    for task in args.tasks:
        started = time.perf_counter()
        record = tune_task(den, args.model, task, sources)
        path = record_path(args.model, task)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"\n{args.model} {task} ({time.perf_counter() - started:.0f} s) -> {path.relative_to(ROOT)}")
        print(format_record(record), flush=True)


if __name__ == "__main__":
    main()
