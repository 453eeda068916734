"""A model's recommended preset, measured on its *training* images (never the held-out ones).

    python benchmarks/recommend.py --model photo      # writes fcs/models/photo/sampler.json
    python benchmarks/recommend.py --model digits     # writes benchmarks/reference_model/sampler.json

Every preset of :data:`fcs.presets.PRESETS` runs the model's inpainting tasks and ×2 super-resolution
on training images (photo: centre crops of 8 training photos; digits: 64 training digits) with the same
seeds and masks; the recommendation is the cheapest preset (mean UNet calls over the tasks) whose mean
hole PSNR is within :data:`TOLERANCE_DB` of the best preset's. The file records every number it was
chosen on; ``fcs`` reads only its ``preset`` (see fcs.presets: a named preset or explicit settings
still win). ``--from-record`` applies the rule again to the numbers already in the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

FOLDERS = {"photo": HERE.parent / "fcs" / "models" / "photo", "digits": HERE / "reference_model"}
TASKS = {"photo": ("box", "strokes", "sr2"), "digits": ("box", "half", "sr2")}
IMAGES = {"photo": 8, "digits": 64}
TOLERANCE_DB = 0.3  # the quality bar a cheaper preset must meet to be recommended (issue 23's bar for a default)


def training_set(model: str) -> torch.Tensor:
    """(N, C, H, W) in [0, 1]: training images only."""
    if model == "digits":
        from digits import load_digits_16, split_indices

        images, _ = load_digits_16()
        return images[split_indices()[0][:IMAGES[model]]]
    from fcs.photos import TRAIN, center_square, load_photo

    crops = np.stack([center_square(load_photo(p), 128) for p in TRAIN[:IMAGES[model]]])
    return torch.from_numpy(crops).permute(0, 3, 1, 2) / 255.0


def measure(model: str) -> dict:
    from dataclasses import asdict

    from frontier import load, sample, scores

    from fcs import SamplerConfig
    from fcs.presets import PRESETS, with_preset
    from fcs.tasks.superres import SR_DEFAULTS

    den, _ = load(model, 1)
    truth = training_set(model)
    defaults = asdict(SamplerConfig())
    table = {}
    for preset in PRESETS:
        row = {}
        for task in TASKS[model]:
            sr = task == "sr2"
            config = with_preset(SR_DEFAULTS if sr else SamplerConfig(), preset, through_decoder=sr)
            fields = {k: v for k, v in asdict(config).items() if v != defaults[k]}
            out, nfe, _ = sample(den, task, truth, "newton", fields)
            row[task] = {"psnr": round(scores(task, out, truth)["psnr_hole"], 2), "nfe": round(nfe)}
            print(f"{model} {preset:6s} {task:7s} {row[task]['psnr']:6.2f} dB at {row[task]['nfe']} NFE",
                  file=sys.stderr, flush=True)
        table[preset] = row
    return table


def recommend(table: dict) -> str:
    psnr = {p: float(np.mean([r["psnr"] for r in rows.values()])) for p, rows in table.items()}
    calls = {p: float(np.mean([r["nfe"] for r in rows.values()])) for p, rows in table.items()}
    good = [p for p in table if psnr[p] >= max(psnr.values()) - TOLERANCE_DB]
    return min(good, key=lambda p: (calls[p], -psnr[p]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(FOLDERS), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--from-record", action="store_true", help="re-apply the rule to the file's numbers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record_path = FOLDERS[args.model] / "sampler.json"
    table = json.loads(record_path.read_text())["measured"] if args.from_record else measure(args.model)
    choice = recommend(table)
    record = {"preset": choice,
              "chosen_by": f"benchmarks/recommend.py: the fewest UNet calls among the presets within {TOLERANCE_DB} dB "
                           "of the best mean hole PSNR over the tasks, on training images "
                           f"({IMAGES[args.model]} {'crops' if args.model == 'photo' else 'digits'})",
              "measured": table}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    for preset, row in table.items():
        cells = " | ".join(f"{task} {r['psnr']:.2f} dB ({r['nfe']})" for task, r in row.items())
        print(f"{'*' if preset == choice else ' '} {preset:6s} {cells}")


if __name__ == "__main__":
    main()
