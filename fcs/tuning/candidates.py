"""Candidate sampler settings: a preset and the SamplerConfig fields changed on top of it.

A candidate is written ``preset`` or ``preset:field=value,field=value`` (``cg:steps=12,newton_steps=3``);
any SamplerConfig field may be changed, so a new preset or a new sampler option is a candidate as soon
as it exists. :func:`default_candidates` is every preset plus a small grid around each: half and 1.5×
its outer steps, one inner step fewer and one more, and the other inner solver at its steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from fcs.config import SamplerConfig
from fcs.presets import PRESETS, with_preset
from fcs.samplers.newton import INNER_SOLVERS


@dataclass(frozen=True)
class Candidate:
    """``preset`` (a name in :data:`fcs.presets.PRESETS`) with ``changes`` (SamplerConfig fields) on top."""

    preset: str
    changes: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.preset + (":" + ",".join(f"{k}={_show(v)}" for k, v in self.changes) if self.changes else "")

    def config(self, base: SamplerConfig, through_decoder: bool = False, held: dict | None = None) -> SamplerConfig:
        """The settings this candidate runs: ``base`` (the task's defaults) < preset < changes < ``held``
        (the sampler flags the user holds fixed)."""
        return with_preset(base, self.preset, through_decoder=through_decoder, **{**dict(self.changes), **(held or {})})


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def parse_candidate(spec: str) -> Candidate:
    """``preset[:field=value,...]`` -> Candidate; ValueError naming what is wrong."""
    preset, _, rest = str(spec).strip().partition(":")
    if preset not in PRESETS:
        raise ValueError(f"candidate {spec!r}: {preset!r} is not a preset ({', '.join(PRESETS)}); write "
                         "preset or preset:field=value,...")
    changes = []
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"candidate {spec!r}: {part!r} is not field=value")
        changes.append((key.strip(), yaml.safe_load(value)))
    candidate = Candidate(preset, tuple(changes))
    try:
        candidate.config(SamplerConfig())
    except ValueError as exc:
        raise ValueError(f"candidate {spec!r}: {exc}") from None
    return candidate


def default_candidates(base: SamplerConfig, through_decoder: bool = False) -> list[Candidate]:
    """Every preset (:data:`fcs.presets.PRESETS`: a new preset joins the grid as soon as it exists), then
    around each: steps ×0.5 and ×1.5, newton_steps −1 and +1,
    the other inner solver; none costing more UNet calls than the dearest of them."""
    out = []
    for name in PRESETS:
        config = Candidate(name).config(base, through_decoder)
        s, k = config.steps, config.newton_steps
        other = next(i for i in INNER_SOLVERS if i != config.inner)
        out.append(Candidate(name))
        out += [Candidate(name, (("steps", max(2, round(s / 2))),)), Candidate(name, (("steps", round(1.5 * s)),)),
                Candidate(name, (("newton_steps", max(1, k - 1)),)), Candidate(name, (("newton_steps", k + 1),)),
                Candidate(name, (("inner", other),))]
    cap = max(Candidate(name).config(base, through_decoder).nfe_per_item for name in PRESETS)
    return [c for c in out if _valid(c, base, through_decoder) and c.config(base, through_decoder).nfe_per_item <= cap]


def _valid(candidate: Candidate, base: SamplerConfig, through_decoder: bool) -> bool:
    try:
        candidate.config(base, through_decoder)
    except ValueError:  # e.g. an lr tuple of the preset's length with a changed newton_steps
        return False
    return True


def distinct(candidates: Iterable[Candidate], base: SamplerConfig, through_decoder: bool = False,
             held: dict | None = None) -> list[tuple[Candidate, SamplerConfig]]:
    """Each candidate with the settings it runs, dropping those that run the same settings as an earlier
    one (e.g. when a held flag fixes what they vary)."""
    seen, out = set(), []
    for candidate in candidates:
        config = candidate.config(base, through_decoder, held)
        key = tuple(sorted(asdict(config).items()))
        if key not in seen:
            seen.add(key)
            out.append((candidate, config))
    return out


def resolve(specs: Sequence[str] | None, base: SamplerConfig, through_decoder: bool = False,
            held: dict | None = None) -> list[tuple[Candidate, SamplerConfig]]:
    """The candidates named by ``specs`` (None: :func:`default_candidates`) with their settings, each once."""
    candidates = default_candidates(base, through_decoder) if not specs else [parse_candidate(s) for s in specs]
    return distinct(candidates, base, through_decoder, held)
