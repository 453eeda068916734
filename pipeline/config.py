"""Job settings, validated when built so a bad value names its field before any Ray or model work.

Every field is declared once, with its default, check, help and group (:mod:`fcs.settings`); the
``fcs run`` flags, the YAML job files and ``--help`` are derived from these declarations.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from fcs.config import DEVICE, DTYPE, MODEL, SamplerConfig
from fcs.loading import model_folder
from fcs.presets import PRESET
from fcs.settings import (
    boolean,
    check_known,
    declared,
    fail,
    integer,
    nonempty,
    number,
    one_of,
    optional,
    setting,
    settings_of,
    text,
    validate_fields,
)
from fcs.tuning import record as records
from fcs.tuning.apply import Applied, sampler_for
from pipeline.errors import RETRY_ERRORS
from pipeline.output import ROWS_PER_FILE
from pipeline.sources import INPUT_FORMATS, check_input_options
from pipeline.storage import READ_ATTEMPTS, Storage
from pipeline.tasks import TASKS

GROUPS = ("input", "output", "model and compute", "task", "sampler")  # headings of --help and the docs
LOCATION = "a non-empty string (a path or URI)"


def _columns(value: Any) -> str | None:
    ok = value is None or (not isinstance(value, str) and all(isinstance(c, str) and c for c in value))
    return None if ok else "null (all input columns) or a list of column names"


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _gpus(value: Any) -> str | None:
    return optional(number(0), "null (auto)")(value) and "null (auto) or a number >= 0, e.g. 1 or 0.5"


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    """One batch job: where the data is, which model, how many sampler actors, how to sample. Each
    field's help is its declaration below; ``sampler`` holds a :class:`fcs.SamplerConfig` (a mapping of
    its fields laid over the preset and the task's defaults), ``task_options`` the task's own options
    (:data:`pipeline.tasks.TASKS`)."""

    # input
    input: str = setting(help="Parquet shards, a folder with images/ (+ masks/), WebDataset .tar shards (e.g. "
                              "s3://b/shards/{00000..00099}.tar) or a .csv/.parquet manifest of image_uri "
                              "(+ mask_uri); a path or an s3://, gs://, file:// URI",
                         check=nonempty("a path or URI"), group="input")
    input_format: str = setting("auto", "input format; auto: detected from the input", one_of(INPUT_FORMATS),
                                group="input", cli={"choices": INPUT_FORMATS})
    keep_columns: tuple[str, ...] | None = setting(
        None, "input columns copied to the output (none: all the task does not consume; the flag alone: no column)",
        _columns, group="input", cli={"nargs": "*", "metavar": "COLUMN"}, normalize=_tuple)
    input_options: dict = setting(help="the input format's own options (WebDataset: image_suffixes, mask_suffix, "
                                       "prompt_suffix); defaults filled in", group="input", cli=False, factory=dict)
    s3_endpoint: str | None = setting(None, "S3-compatible endpoint URL (none: $AWS_ENDPOINT_URL, else AWS)",
                                      optional(text), group="input")
    read_attempts: int = setting(READ_ATTEMPTS, "tries per object read from object storage (waits doubling "
                                                "from 0.25 s) before the item is a read: error row", integer(1),
                                 group="input")
    max_side: int = setting(2048, "images with a larger side are error rows", integer(1), group="input")
    limit: int | None = setting(None, "process at most this many pending items (none: all)",
                                optional(integer(1), "None"), group="input", cli={"type": int})
    # output
    output: str = setting(help="folder or prefix that receives part-*.parquet and _summary.json; a rerun resumes",
                          check=nonempty("a path or URI"), group="output")
    rows_per_file: int = setting(ROWS_PER_FILE, "rows per committed output file (larger: fewer files; smaller: less "
                                                "work redone after a driver crash)", integer(1), group="output")
    retry_errors: str = setting("none", "what a rerun re-processes of the committed error rows: none, transient "
                                        "(read: and sample: errors) or all (the flag alone; after fixing the inputs)",
                                one_of(RETRY_ERRORS), group="output",
                                cli={"nargs": "?", "const": "all", "choices": RETRY_ERRORS})
    # model and compute
    model: str = declared(MODEL)
    actors: int = setting(1, "sampler actors, one resident model each", integer(1), group="model and compute")
    batch_size: int = setting(4, "items per sampler call", integer(1), group="model and compute")
    gpus_per_actor: float | None = setting(None, "GPUs per sampler actor (none: 1 when the cluster has GPUs, else "
                                                 "CPU)", _gpus, group="model and compute", cli={"type": float})
    cpus_per_actor: float = setting(0.0, "CPUs reserved per sampler actor (0 keeps the CPU stages from starving)",
                                    number(0), group="model and compute")
    threads: int | None = setting(None, "torch threads per sampler actor on CPU (none: this machine's cores less one "
                                        "for the CPU stages, shared among the actors)", optional(integer(1)),
                                  group="model and compute", cli={"type": int})
    device: str = declared(DEVICE, "auto")
    dtype: str = declared(DTYPE, "auto")
    actor_start_timeout_s: int = setting(1800, "fail if the sampler actors (model loaded) are not all up by then",
                                         integer(1), group="model and compute")
    compile_unet: bool = setting(False, "torch.compile the denoiser (GPU speed switch)", boolean,
                                 group="model and compute", cli={"action": argparse.BooleanOptionalAction})
    channels_last: bool = setting(False, "channels-last memory format (GPU speed switch)", boolean,
                                  group="model and compute", cli={"action": argparse.BooleanOptionalAction})
    pad_batches: bool = setting(False, "run a short last batch padded to batch_size (one shape for GPU kernels and "
                                       "compiled graphs; same results)", boolean, group="model and compute",
                                cli={"action": argparse.BooleanOptionalAction})
    # task
    task: str = setting("restore", "the task, recorded in every row", one_of(tuple(TASKS)), group="task", cli=False)
    task_options: dict = setting(help="the task's options (e.g. superres scale); defaults filled in", group="task",
                                 cli=False, factory=dict)
    prompt: str = setting("", "prompt for rows without one", text, group="task")
    # sampler
    preset: str | None = declared(PRESET, None)
    tuning: str | None = setting(None, "a tuning record (fcs tune's tuning.json, a path or URI) whose chosen settings "
                                       "the job runs; --preset and the sampler flags still win", optional(text),
                                 group="sampler")
    sampler: SamplerConfig | dict = setting(help="SamplerConfig fields laid over the preset and the task's defaults",
                                            group="sampler", cli=False, factory=dict)

    def __post_init__(self) -> None:
        validate_fields(self)
        src, dst = (Storage.from_uri(uri).uri().rstrip("/") for uri in (self.input, self.output))  # one spelling
        if src == dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
            fail("output", self.output, "a location neither equal to, inside, nor containing the input (a rerun "
                 "would read its own output as input)")
        if self.device != "auto" and torch.device(self.device).type == "cuda" and self.gpus_per_actor == 0:
            fail("device", self.device, "cpu or auto when gpus_per_actor is 0 (the actor is given no GPU)")
        if not isinstance(self.input_options, dict):
            fail("input_options", self.input_options, f"a mapping of {self.input_format} input options")
        object.__setattr__(self, "input_options", check_input_options(self.input_format, self.input_options))
        if not isinstance(self.task_options, dict):
            fail("task_options", self.task_options, f"a mapping of {self.task} options")
        task = TASKS[self.task]
        object.__setattr__(self, "task_options", task.check_options(self.task_options, self.max_side))
        if isinstance(self.sampler, dict):
            record = read_tuning(self.tuning, self.s3_endpoint) if self.tuning else None
            sampler, applied = sampler_for(task.sampler, task=self.task, model=self.model,
                                           through_decoder=task.through_decoder, preset=self.preset, record=record,
                                           where=self.tuning, folder=model_folder(self.model), explicit=self.sampler)
            object.__setattr__(self, "sampler", sampler)
            object.__setattr__(self, "preset", applied.preset)
            object.__setattr__(self, "_applied", applied)
        if not isinstance(self.sampler, SamplerConfig):
            fail("sampler", self.sampler, "a mapping of SamplerConfig fields")
        if "_applied" not in self.__dict__:  # built from settings already resolved (a copy of a resolved config)
            object.__setattr__(self, "_applied", Applied("given", self.preset or "", self.tuning))

    @property
    def applied(self) -> Applied:
        """Where the sampler settings came from (:class:`fcs.tuning.apply.Applied`)."""
        return self.__dict__["_applied"]

    @classmethod
    def from_dict(cls, values: dict) -> JobConfig:
        """Build from a plain dict (a YAML file merged with flags); unknown keys fail with their names."""
        check_known(values, [f.name for f in fields(cls)], "job config")
        for spec in settings_of(cls):
            if spec.required and values.get(spec.name) is None:
                raise ValueError(f"config field {spec.name!r}: missing; give {spec.flag} ({spec.help.split(';')[0]})")
        values = {**values, **{name: values.get(name) or {} for name in ("sampler", "task_options", "input_options")}}
        return cls(**values)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sampler"] = self.sampler.to_dict()
        return out


def read_tuning(uri: str, endpoint: str | None = None) -> dict:
    """The tuning record at ``uri`` (a local path or an object URI), parsed and checked for format
    (:func:`fcs.tuning.record.parse`); ValueError in one line when it is missing or unreadable."""
    storage = Storage.from_uri(uri, endpoint)
    try:
        text = storage.read_bytes(storage.path())
    except (OSError, ValueError) as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"tuning record {uri!r} cannot be read ({reason}); write one with fcs tune <task> --model M "
                         f"--input URI --output DIR (it writes DIR/{records.RECORD})") from None
    return records.parse(text, uri)
