"""The tuning record (``tuning.json``): what ``fcs tune`` measured and chose, and how a job applies it.

A record is one JSON object (:data:`FORMAT` 1):

    format, created_at, fcs_version
    task, task_options          what it was tuned for
    model                       {id, fingerprint}: the model as named, and a hash of its weight files
    rule                        {text, tolerance_db, max_calls, detail_floor}: how ``chosen`` was picked
    held                        the sampler fields held fixed over every candidate
    items                       {read, used, ids, skipped}: the input items tried, those that made
                                problems (ids) and, per reason, those that could not
    hardware                    {device, dtype, torch, name, actors, batch_size}
    candidates                  one entry per candidate: name, preset, changes, settings, calls,
                                psnr / ssim / detail {mean, low, high}, sample_s, peak_mem_mb, ok, errors
    chosen                      the chosen candidate's name, preset, changes, settings, calls, psnr

A job applies ``chosen.settings`` (a full :class:`fcs.SamplerConfig`). A record made for another task
or model is refused, naming both: models are compared by fingerprint where both sides have one (a
renamed copy of the same weights is the same model), else by name. A model folder may carry its own
records, ``tuning/<task>.json``, applied when a job names neither a preset nor a record.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from fcs.config import SamplerConfig

FORMAT = 1
RECORD = "tuning.json"  # what fcs tune writes in its output
MODEL_RECORDS = "tuning"  # a model folder's own records: <folder>/tuning/<task>.json
REQUIRED = ("task", "model", "chosen", "candidates", "rule", "items")
_WEIGHTS = (".safetensors", ".bin", ".pt")
_CONFIGS = ("config.json", "model_index.json", "scheduler_config.json")  # not records, cards or training logs
_EDGE = 1 << 20  # bytes hashed at each end of a weight file (its size covers the middle)


def model_folder_record(folder: str | Path | None, task: str) -> Path | None:
    """``<folder>/tuning/<task>.json`` when the folder has one."""
    path = Path(folder) / MODEL_RECORDS / f"{task}.json" if folder is not None else None
    return path if path is not None and path.is_file() else None


def fingerprint(model: str) -> str | None:
    """A hash of the model's weight and config files (names, sizes, the first and last MiB of each), or
    None where no local copy is at hand (a hub id not downloaded here)."""
    from fcs.loading import BUILT, ORACLES, model_folder, resolve_model

    if model in ORACLES:
        folder = Path(__file__).parent.parent / "oracles"
        files = [folder / "fitted.json"]
        root = folder
    else:
        root = model_folder(model) or (Path(resolve_model(model)) if model in BUILT else None)
        if root is None:
            return None
        files = sorted(p for p in Path(root).rglob("*") if p.is_file() and (p.suffix in _WEIGHTS or p.name in _CONFIGS)
                       and MODEL_RECORDS not in p.relative_to(root).parts[:1])
    digest = hashlib.sha256(model.encode() if model in ORACLES else b"")
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}:{size}:".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(_EDGE))
            if size > 2 * _EDGE:
                fh.seek(-_EDGE, 2)
                digest.update(fh.read(_EDGE))
    return "sha256:" + digest.hexdigest()[:20]


def fcs_version() -> str:
    try:
        return metadata.version("fcs")
    except metadata.PackageNotFoundError:
        return "unknown"


def parse(text: str | bytes, where: str) -> dict:
    """A record from its JSON text; ValueError in one line for malformed text, another format, or a
    missing field (``where`` names the file in the message)."""
    try:
        record = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"tuning record {where!r} is not valid JSON ({exc}); write it again with fcs tune") from None
    if not isinstance(record, dict):
        raise ValueError(f"tuning record {where!r} is not a JSON object; write it again with fcs tune")
    if "format" not in record:
        old = " (a preset recommendation written before fcs tune)" if "preset" in record else ""
        raise ValueError(f"tuning record {where!r} is in an older format{old}; measure again with fcs tune")
    if record["format"] != FORMAT:
        raise ValueError(f"tuning record {where!r} has format {record['format']!r}; this fcs reads format {FORMAT}"
                         " (measure again with this version's fcs tune)")
    missing = [k for k in REQUIRED if k not in record]
    if not missing and (not isinstance(record["chosen"], dict) or "settings" not in record["chosen"]):
        missing.append("chosen.settings")
    if missing:
        raise ValueError(f"tuning record {where!r} lacks field(s) {', '.join(missing)}; write it again with fcs tune")
    try:
        settings(record)
    except ValueError as exc:
        raise ValueError(f"tuning record {where!r}: chosen.settings: {exc}") from None
    return record


def read(path: str | Path) -> dict:
    """The record in local file ``path`` (:func:`parse`); ValueError when it is missing."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"tuning record {str(path)!r} cannot be read ({exc.strerror or exc}); write one with "
                         "fcs tune <task> --model M --input URI --output DIR") from None
    return parse(text, str(path))


def settings(record: dict) -> SamplerConfig:
    """The sampler settings the record chose."""
    return SamplerConfig.from_dict(_as_tuples(record["chosen"]["settings"]))


def _as_tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def check(record: dict, where: str, *, task: str, model: str) -> None:
    """ValueError naming both when ``record`` was made for another task or model than ``task``/``model``."""
    if record["task"] != task:
        raise ValueError(f"tuning record {where!r} was made for task {record['task']!r}, not {task!r}; use a record "
                         f"from fcs tune {task}")
    made_for = record["model"] if isinstance(record["model"], dict) else {"id": record["model"]}
    mine, theirs = fingerprint(model), made_for.get("fingerprint")
    if mine and theirs:
        if mine != theirs:
            raise ValueError(f"tuning record {where!r} was made for model {made_for.get('id')!r} (weights {theirs}), "
                             f"not {model!r} (weights {mine}); tune this model with fcs tune {task} --model {model}")
        return
    if _same_name(made_for.get("id"), model):
        return
    raise ValueError(f"tuning record {where!r} was made for model {made_for.get('id')!r}, not {model!r}; tune this "
                     f"model with fcs tune {task} --model {model}")


def _same_name(a: str | None, b: str) -> bool:
    def spelled(name: str | None) -> str:
        return str(Path(name).resolve()) if name and Path(name).exists() else str(name)

    return a is not None and spelled(a) == spelled(b)
