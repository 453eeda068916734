"""Named sampler presets: a few SamplerConfig fields laid over a task's own defaults.

    paper   each task's own defaults, which are the paper's settings (S = 20, K = 5, lr =
            linspace(0.5, 0.1, K); super-resolution K = 10, lr = 0.1): 220 UNet forwards per inpainted
            image, 420 per upscaled one (layers: K = 3; style: guidance 3, as documented per task).
    fast    S = 10, K = 3 of the paper's inner steps: 70 forwards. Matches or beats paper for
            latent-mask inpainting, loses where the error comes through the VAE decoder.
    cg      the conjugate-gradient inner solver (``inner="cg"``, fcs.samplers.moment): S = 16, K = 2,
            48 forwards for latent-mask inpainting; S = 20, K = 4, 100 forwards where the error comes
            through the decoder (super-resolution). Closer to the exact posterior than paper on 9 of 10
            oracle rows (``benchmarks/oracle.py``), the default for a model without a tuning record, but below paper
            on the pixel-space digits model's box holes (``benchmarks/frontier.py``; docs/results.md, "Quality
            vs cost").
    calibrated  cg with second-order outer steps (``solver="2m"``) on a grid uniform in log-SNR
            (``spacing="logsnr"``): S = 12, K = 3, 48 forwards (through the decoder S = 20, K = 4, 100).
            DDIM's first-order steps leave samples too alike (half to three quarters of the posterior's
            variance on the oracles); these keep it (``benchmarks/spread.py``).

Which settings a run uses (a named preset, a tuning record measured by ``fcs tune``, the model
folder's own record, else :data:`DEFAULT_PRESET`) is decided in :mod:`fcs.tuning.apply`. Explicit
settings win over the preset, the preset over the task's defaults.
"""

from __future__ import annotations

from dataclasses import asdict

from fcs.config import SamplerConfig
from fcs.settings import Setting, one_of, optional

PRESETS: dict[str, dict] = {
    "paper": {},
    "fast": {"steps": 10, "newton_steps": 3},
    "cg": {"inner": "cg", "steps": 16, "newton_steps": 2, "lr": None},
    "calibrated": {"inner": "cg", "steps": 12, "newton_steps": 3, "lr": None, "spacing": "logsnr", "solver": "2m"},
}
# where the constraint reaches x̂0 through the VAE decoder, a preset may need more inner steps
THROUGH_DECODER: dict[str, dict] = {
    "cg": {"inner": "cg", "steps": 20, "newton_steps": 4, "lr": None},
    "calibrated": {"inner": "cg", "steps": 20, "newton_steps": 4, "lr": None, "spacing": "logsnr", "solver": "2m"},
}
# for a model without a tuning record: cg beats paper at a quarter of the calls on the exact-posterior
# oracles, the photo model and the held-out priors the issues measured; paper wins only on pixel-space
# digits box holes (README "Results"; docs/results.md "Tuning")
DEFAULT_PRESET = "cg"


PRESET = Setting("preset", None, "named sampler settings laid under the sampler flags (none: the --tuning record, "
                 f"else the model's own, else {DEFAULT_PRESET}); paper: the paper's settings, fast and cg: fewer UNet "
                 "calls", optional(one_of(tuple(PRESETS))), group="sampler", cli={"choices": tuple(PRESETS)})


def check_preset(name: str) -> str:
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"config field 'preset': got {name!r}, expected one of {', '.join(PRESETS)}")
    return name


def with_preset(base: SamplerConfig, name: str, *, through_decoder: bool = False, **explicit) -> SamplerConfig:
    """``base`` (a task's defaults) with preset ``name`` laid over it, then the ``explicit`` fields.
    ``through_decoder``: the task's constraint reaches x̂0 through the decoder (super-resolution)."""
    fields = (THROUGH_DECODER if through_decoder else PRESETS).get(check_preset(name), PRESETS[name])
    return SamplerConfig.from_dict({**asdict(base), **fields, **explicit})
