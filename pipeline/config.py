"""Job settings, validated when built so a bad value names its field before any Ray or model work."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from fcs.config import SamplerConfig
from fcs.loading import DTYPES, model_folder
from fcs.presets import choose_preset
from pipeline.errors import RETRY_ERRORS
from pipeline.output import ROWS_PER_FILE
from pipeline.sources import INPUT_FORMATS
from pipeline.sources.webdataset import DEFAULT_IMAGE_SUFFIXES, DEFAULT_MASK_SUFFIX, normalize_suffixes
from pipeline.storage import READ_ATTEMPTS, Storage
from pipeline.tasks import TASKS


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"config field {name!r}: got {value!r}, expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class JobConfig:
    """One batch job: where the data is, which model, how many sampler actors, how to sample.

    Attributes:
        input: Parquet shards (a file or a prefix), a folder with ``images/`` and ``masks/``, WebDataset
            tar shards (``shards/{00000..00099}.tar``, a ``.tar`` or a prefix of them) or a manifest
            (Parquet/CSV of ``id``, ``image_uri``, ``mask_uri``); a local path or an s3://, gs://, file:// URI.
        input_format: auto (detected, :func:`pipeline.sources.discover`), parquet, folder, webdataset, manifest.
        keep_columns: input columns copied to every output row; None = all the task does not consume
            (:mod:`pipeline.carry`), [] = none.
        image_suffixes, mask_suffix, prompt_suffix: WebDataset members used as the image (the first
            present), the mask and the prompt (None: no prompt from the shards; e.g. ``txt`` makes the
            caption the prompt, and it stays a metadata column too).
        output: folder or prefix that receives ``part-*.parquet`` and ``_summary.json``.
        model: hub id, local diffusers folder, or 'tiny' (built-in random-weight test model).
        actors: sampler actors, each holding one resident model. batch_size: items per sampler call.
        gpus_per_actor: None = auto (1 when the cluster has GPUs, else CPU); a number forces it.
        cpus_per_actor: CPUs reserved per sampler actor (0 keeps the CPU stages from starving).
        device, dtype: passed to :func:`fcs.load_denoiser` ('auto' = CUDA fp16 when visible).
        s3_endpoint: S3-compatible endpoint; None = $AWS_ENDPOINT_URL or AWS itself.
        prompt: prompt for rows without a ``prompt`` column value. max_side: larger images are
            error rows. limit: process at most this many pending items (None = all).
        actor_start_timeout_s: fail if the sampler actors (model loaded) are not all up by then.
        task: restore, superres, style, layers or outpaint (:data:`pipeline.tasks.TASKS`); recorded in
            every row.
        task_options: the task's options (e.g. superres ``scale``); defaults filled in when built.
        compile_unet, channels_last: GPU speed switches (``fcs.UNetDenoiser.accelerate``), off by default.
        pad_batches: run a short last batch padded to ``batch_size`` (one shape for GPU kernels and
            compiled graphs); results are the same.
        rows_per_file: rows per committed output file (the last one of a run holds fewer); larger
            files mean fewer files for every reader, smaller ones less finished work redone after a
            driver crash.
        retry_errors: what a rerun re-processes of the error rows already committed: none, transient
            (``read:`` and ``sample:`` errors) or all (also ``decode:``/``validate:`` ones, after
            fixing the inputs); see :mod:`pipeline.errors`.
        read_attempts: tries per object read from object storage (waits doubling from 0.25 s)
            before the item is a ``read:`` error row.
        preset: a named set of sampler settings (:data:`fcs.presets.PRESETS`: paper, fast, cg) laid
            over the task's defaults; fields given in ``sampler`` win over it. None: the model folder's
            recommendation (``sampler.json``), else paper; the config holds the preset that applied.
        sampler: the :class:`fcs.SamplerConfig`, or a mapping of its fields laid over the preset and
            the task's paper defaults (superres K=10, lr=0.1; style guidance 3).
    """

    input: str
    output: str
    model: str = "tiny"
    actors: int = 1
    batch_size: int = 4
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 0.0
    device: str = "auto"
    dtype: str = "auto"
    s3_endpoint: str | None = None
    prompt: str = ""
    max_side: int = 2048
    limit: int | None = None
    actor_start_timeout_s: int = 1800
    task: str = "restore"
    task_options: dict = field(default_factory=dict)
    compile_unet: bool = False
    channels_last: bool = False
    pad_batches: bool = False
    rows_per_file: int = ROWS_PER_FILE
    retry_errors: str = "none"
    read_attempts: int = READ_ATTEMPTS
    preset: str | None = None
    sampler: SamplerConfig | dict = field(default_factory=dict)
    input_format: str = "auto"
    keep_columns: tuple[str, ...] | None = None
    image_suffixes: tuple[str, ...] = DEFAULT_IMAGE_SUFFIXES
    mask_suffix: str = DEFAULT_MASK_SUFFIX
    prompt_suffix: str | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                _fail(name, value, "a non-empty string (a path or URI)")
        src, dst = (Storage.from_uri(uri).uri().rstrip("/") for uri in (self.input, self.output))  # one spelling
        if src == dst or dst.startswith(src + "/") or src.startswith(dst + "/"):
            _fail("output", self.output, "a location neither equal to, inside, nor containing the input (a rerun "
                  "would read its own output as input)")
        for name in ("actors", "batch_size", "max_side", "actor_start_timeout_s", "rows_per_file", "read_attempts"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                _fail(name, value, "a positive integer")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            _fail("limit", self.limit, "None or a positive integer")
        if self.gpus_per_actor is not None and (
            not isinstance(self.gpus_per_actor, (int, float)) or isinstance(self.gpus_per_actor, bool)
            or self.gpus_per_actor < 0
        ):
            _fail("gpus_per_actor", self.gpus_per_actor, "null (auto) or a number >= 0, e.g. 1 or 0.5")
        self._check_device()
        if not isinstance(self.cpus_per_actor, (int, float)) or self.cpus_per_actor < 0:
            _fail("cpus_per_actor", self.cpus_per_actor, "a number >= 0")
        for name in ("compile_unet", "channels_last", "pad_batches"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "true or false")
        if self.retry_errors not in RETRY_ERRORS:
            _fail("retry_errors", self.retry_errors, f"one of {', '.join(RETRY_ERRORS)}")
        if not isinstance(self.prompt, str):
            _fail("prompt", self.prompt, "a string")
        if self.task not in TASKS:
            _fail("task", self.task, f"one of {', '.join(TASKS)}")
        if not isinstance(self.task_options, dict):
            _fail("task_options", self.task_options, f"a mapping of {self.task} options")
        task = TASKS[self.task]
        object.__setattr__(self, "task_options", task.check_options(self.task_options, self.max_side))
        self._check_inputs()
        object.__setattr__(self, "preset", choose_preset(self.preset, model_folder(self.model)))
        if isinstance(self.sampler, dict):
            object.__setattr__(self, "sampler", task.sampler_config(self.sampler, self.preset))
        if not isinstance(self.sampler, SamplerConfig):
            _fail("sampler", self.sampler, "a mapping of SamplerConfig fields")

    def _check_device(self) -> None:
        if not isinstance(self.dtype, str) or (self.dtype != "auto" and self.dtype not in DTYPES):
            _fail("dtype", self.dtype, f"auto or one of {', '.join(DTYPES)}")
        if not isinstance(self.device, str):
            _fail("device", self.device, "auto or a torch device such as cuda, cuda:0, cpu, mps")
        if self.device != "auto":
            try:
                kind = torch.device(self.device).type
            except (RuntimeError, ValueError):
                _fail("device", self.device, "auto or a torch device such as cuda, cuda:0, cpu, mps")
            if kind == "cuda" and self.gpus_per_actor == 0:
                _fail("device", self.device, "cpu or auto when gpus_per_actor is 0 (the actor is given no GPU)")

    def _check_inputs(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            _fail("input_format", self.input_format, f"one of {', '.join(INPUT_FORMATS)}")
        if self.keep_columns is not None:
            if isinstance(self.keep_columns, str) or not all(isinstance(c, str) and c for c in self.keep_columns):
                _fail("keep_columns", self.keep_columns, "null (all input columns) or a list of column names")
            object.__setattr__(self, "keep_columns", tuple(self.keep_columns))
        images = (self.image_suffixes,) if isinstance(self.image_suffixes, str) else self.image_suffixes
        if not isinstance(images, (list, tuple)) or not images or not all(isinstance(s, str) and s.strip(".")
                                                                         for s in images):
            _fail("image_suffixes", self.image_suffixes, "a non-empty list of member suffixes, e.g. [jpg, png]")
        object.__setattr__(self, "image_suffixes", normalize_suffixes(images))
        for name in ("mask_suffix", "prompt_suffix"):
            value = getattr(self, name)
            if value is None and name == "prompt_suffix":
                continue
            if not isinstance(value, str) or not value.strip("."):
                _fail(name, value, "a member suffix, e.g. mask.png" + (" or null" if name == "prompt_suffix" else ""))
            object.__setattr__(self, name, normalize_suffixes(value)[0])
        if self.mask_suffix in self.image_suffixes:
            _fail("mask_suffix", self.mask_suffix, f"a suffix other than the image's: {', '.join(self.image_suffixes)}")

    @property
    def suffixes(self):
        """The WebDataset members to use (:class:`pipeline.sources.webdataset.Suffixes`)."""
        from pipeline.sources.webdataset import Suffixes

        return Suffixes(self.image_suffixes, self.mask_suffix, self.prompt_suffix)

    @classmethod
    def from_dict(cls, values: dict) -> JobConfig:
        """Build from a plain dict (a YAML file merged with flags); unknown keys fail with their names."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown job config field(s): {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(f.name for f in fields(cls))}"
            )
        values = {**values, "sampler": values.get("sampler") or {}, "task_options": values.get("task_options") or {}}
        return cls(**values)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sampler"] = self.sampler.to_dict()
        return out
