"""Which sampler settings a run uses, and why.

    1. explicit settings (flags, a job file's ``sampler:``, keyword arguments) always win, over
    2. a named preset (``--preset``), else
    3. a tuning record given to the run (``--tuning``, ``tuning=``), else
    4. the model folder's own record for the task (``<folder>/tuning/<task>.json``), else
    5. :data:`fcs.presets.DEFAULT_PRESET`, with one log line naming the ``fcs tune`` command that would
       measure the model.

:func:`sampler_for` returns the settings and an :class:`Applied` that says which of these it was.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fcs.config import SamplerConfig
from fcs.presets import DEFAULT_PRESET, check_preset, with_preset
from fcs.tuning import record as records

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()  # (model, task) already told it is unmeasured, once per process


@dataclass(frozen=True)
class Applied:
    """Where a run's settings came from: ``source`` is preset, tuning (a record given to the run),
    model (the model folder's record) or default; ``preset`` the preset underneath; ``record`` the
    record's location and ``candidate`` its chosen name; ``settings`` the fields it set."""

    source: str
    preset: str
    record: str | None = None
    candidate: str | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def sampler_for(base: SamplerConfig, *, task: str, model: str, through_decoder: bool = False,
                preset: str | None = None, record: dict | None = None, where: str | None = None,
                folder: str | Path | None = None, explicit: dict | None = None) -> tuple[SamplerConfig, Applied]:
    """The settings of a run of ``task`` on ``model`` from ``base`` (the task's defaults), and where they
    came from. ``record``: a parsed tuning record given to the run (``where``: its location), checked
    against ``task`` and ``model``; ``folder``: the model's local folder, whose record applies when
    neither a preset nor a record is given."""
    explicit = dict(explicit or {})
    if preset is not None:
        if record is not None:
            log.info("preset %s given: the tuning record %s is not applied", preset, where)
        return with_preset(base, check_preset(preset), through_decoder=through_decoder, **explicit), \
            Applied("preset", preset)
    source = "tuning"
    if record is None:
        path = records.model_folder_record(folder, task)
        if path is not None:
            record, where, source = records.read(path), str(path), "model"
    if record is None:
        if (model, task) not in _warned:
            _warned.add((model, task))
            log.info("model %s has no tuning record for %s: running preset %s, unmeasured on it (measure it with: "
                     "fcs tune %s --model %s --input <your data> --output <dir>, then --tuning <dir>/%s)",
                     model, task, DEFAULT_PRESET, task, model, records.RECORD)
        return with_preset(base, DEFAULT_PRESET, through_decoder=through_decoder, **explicit), \
            Applied("default", DEFAULT_PRESET)
    records.check(record, where, task=task, model=model)
    chosen = record["chosen"]
    config = SamplerConfig.from_dict({**records.settings(record).to_dict(), **explicit})
    return config, Applied(source, chosen.get("preset", DEFAULT_PRESET), where, chosen.get("name"),
                           dict(chosen.get("changes") or {}))
