"""Named sampler presets: a few SamplerConfig fields laid over a task's own defaults.

    paper   each task's own defaults, which are the paper's settings (S = 20, K = 5, lr =
            linspace(0.5, 0.1, K); super-resolution K = 10, lr = 0.1): 220 UNet forwards per inpainted
            image, 420 per upscaled one (layers: K = 3; style: guidance 3, as documented per task).
    fast    S = 10, K = 3 of the paper's inner steps: 70 forwards. Matches or beats paper for
            latent-mask inpainting, loses where the error comes through the VAE decoder.
    cg      the conjugate-gradient inner solver (``inner="cg"``, fcs.samplers.moment): S = 16, K = 2,
            48 forwards for latent-mask inpainting; S = 20, K = 4, 100 forwards where the error comes
            through the decoder (super-resolution). Closer to the exact posterior than paper on 9 of 10
            oracle rows (``benchmarks/oracle.py``), the photo model's recommendation, but below paper
            on the pixel-space digits model's box holes (``benchmarks/frontier.py``; docs/results.md, "Quality
            vs cost").

Which preset applies: the one named (``--preset``, ``preset:``), else the model's own recommendation
(``sampler.json`` in its folder, measured on its training images by ``benchmarks/recommend.py``), else
:data:`DEFAULT_PRESET`.
Explicit settings win over the preset, the preset over the task's defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from fcs.config import SamplerConfig
from fcs.settings import Setting, one_of, optional

PRESETS: dict[str, dict] = {
    "paper": {},
    "fast": {"steps": 10, "newton_steps": 3},
    "cg": {"inner": "cg", "steps": 16, "newton_steps": 2, "lr": None},
}
# where the constraint reaches x̂0 through the VAE decoder, a preset may need more inner steps
THROUGH_DECODER: dict[str, dict] = {
    "cg": {"inner": "cg", "steps": 20, "newton_steps": 4, "lr": None},
}
DEFAULT_PRESET = "paper"  # for a model that recommends none
RECOMMENDATION = "sampler.json"  # in a model folder: {"preset": <name>, ...why and how it was measured}


PRESET = Setting("preset", None, "named sampler settings laid under the sampler flags (none: the model's own "
                 f"recommendation, its {RECOMMENDATION}, else {DEFAULT_PRESET}; cg and fast: fewer UNet calls)",
                 optional(one_of(tuple(PRESETS))), group="sampler", cli={"choices": tuple(PRESETS)})


def check_preset(name: str) -> str:
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"config field 'preset': got {name!r}, expected one of {', '.join(PRESETS)}")
    return name


def recommended_preset(folder: str | Path | None) -> str | None:
    """The preset a model folder recommends in its ``sampler.json``, or None (no folder, no file)."""
    path = Path(folder) / RECOMMENDATION if folder is not None else None
    if path is None or not path.is_file():
        return None
    name = json.loads(path.read_text()).get("preset")
    try:
        return check_preset(name)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def choose_preset(named: str | None, folder: str | Path | None) -> str:
    """The preset that applies: ``named`` if given, else the model folder's recommendation, else the default."""
    return check_preset(named) if named is not None else recommended_preset(folder) or DEFAULT_PRESET


def with_preset(base: SamplerConfig, name: str, *, through_decoder: bool = False, **explicit) -> SamplerConfig:
    """``base`` (a task's defaults) with preset ``name`` laid over it, then the ``explicit`` fields.
    ``through_decoder``: the task's constraint reaches x̂0 through the decoder (super-resolution)."""
    fields = (THROUGH_DECODER if through_decoder else PRESETS).get(check_preset(name), PRESETS[name])
    return SamplerConfig.from_dict({**asdict(base), **fields, **explicit})
