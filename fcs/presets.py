"""Named sampler presets: a few SamplerConfig fields laid over a task's own defaults.

    paper   each task's own defaults, which are the paper's settings (S = 20, K = 5, lr =
            linspace(0.5, 0.1, K); super-resolution K = 10, lr = 0.1): 220 UNet forwards per inpainted
            image, 420 per upscaled one (layers: K = 3; style: guidance 3, as documented per task).
    fast    S = 10, K = 3: 70 forwards. On the quality-vs-cost frontier of both trained models
            (``benchmarks/frontier.py``; README, "Quality vs cost") it matches or beats paper for
            latent-mask inpainting, but loses 2–7 dB where the error comes through the VAE decoder
            (scattered pixels, super-resolution), so it is opt-in.

Explicit settings win over a preset, a preset over the task's defaults.
"""

from __future__ import annotations

from dataclasses import asdict

from fcs.config import SamplerConfig

PRESETS: dict[str, dict] = {
    "paper": {},
    "fast": {"steps": 10, "newton_steps": 3},
}
DEFAULT_PRESET = "paper"


def check_preset(name: str) -> str:
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"config field 'preset': got {name!r}, expected one of {', '.join(PRESETS)}")
    return name


def with_preset(base: SamplerConfig, name: str, **explicit) -> SamplerConfig:
    """``base`` (a task's defaults) with preset ``name`` laid over it, then the ``explicit`` fields."""
    return SamplerConfig.from_dict({**asdict(base), **PRESETS[check_preset(name)], **explicit})
